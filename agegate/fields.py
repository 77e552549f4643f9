"""Marshmallow fields shared by the request schemas."""

from __future__ import annotations

import re
from typing import Any

import marshmallow as ma

# PostgreSQL's text refuses NUL, and an unpaired surrogate (JSON can carry "\ud800") has no
# UTF-8 form: neither could be stored, hashed or logged, so neither gets past the edge.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class Text(ma.fields.String):
    """A string of characters that every store can keep: no NUL, no unpaired surrogate."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text: str = super()._deserialize(value, attr, data, **kwargs)
        if _UNSTORABLE.search(text):
            raise ma.ValidationError("must not contain NUL or unpaired surrogate characters")
        return text

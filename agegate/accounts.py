"""Platform account ids: validated before they reach a query, a key, a path or a template."""

from __future__ import annotations

import re

# docs/reference/contract.md. Without anchors, for the purge targets' automata (targets/ids.py);
# matched in full (\Z, not $, so that a trailing newline is refused).
ACCOUNT_ID_REGEX = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}"
ACCOUNT_ID_PATTERN = re.compile(ACCOUNT_ID_REGEX + r"\Z")
ACCOUNT_ID_RULE = "1-128 of A-Z a-z 0-9 . _ : -, starting with a letter or digit"


def is_valid_account_id(value: object) -> bool:
    return isinstance(value, str) and ACCOUNT_ID_PATTERN.match(value) is not None

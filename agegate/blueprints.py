"""The Blueprint every agegate API module uses: flask-smorest's, with a JSON parser that
answers a body nested too deeply to read as malformed JSON (400), not as a crash."""

from __future__ import annotations

import json
from typing import Any

import flask
import flask_smorest
from webargs.flaskparser import FlaskParser


class BodyParser(FlaskParser):
    def _raw_load_json(self, req: flask.Request) -> Any:
        try:
            return super()._raw_load_json(req)
        except RecursionError:  # Python's JSON reader recurses once per level of nesting
            raise json.JSONDecodeError("nested too deeply", "<request body>", 0) from None


class Blueprint(flask_smorest.Blueprint):  # type: ignore[misc]
    ARGUMENTS_PARSER = BodyParser()

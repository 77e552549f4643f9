"""The flask-smorest Api, adapted: problem details for every error, bearer-key security in the spec,
and the docs page served from assets installed with the package (no internet needed)."""

from __future__ import annotations

import http
import json
from typing import Any

import flask_smorest
import marshmallow as ma
from apispec import BasePlugin
from flask import Blueprint, Flask, Response, send_from_directory
from flask.typing import ResponseReturnValue
from flask_smorest.utils import prepare_response
from swagger_ui_bundle import swagger_ui_path
from werkzeug.exceptions import HTTPException

from agegate import errors
from agegate.api_keys.auth import BODY_METHODS
from agegate.edge import current_request

SWAGGER_ASSETS_URL = "/docs/assets/"
# json.dumps with any option builds a new encoder per call; this one is built once.
_COMPACT = json.JSONEncoder(separators=(",", ":"))


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details, as every agegate error is rendered."""

    class Meta:
        unknown = ma.INCLUDE  # problem types may add extension members

    type = ma.fields.String(metadata={"example": "about:blank"})
    title = ma.fields.String(required=True)
    status = ma.fields.Integer(required=True)
    detail = ma.fields.String(required=True)
    instance = ma.fields.String()
    code = ma.fields.String(required=True, metadata={"description": "stable, snake_case"})
    errors = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.List(ma.fields.String()),
        metadata={"description": "422 only: field → messages"},
    )


class ErrorResponsesPlugin(BasePlugin):
    """Every operation documents the errors the edge itself returns where they can occur.

    The guard (`requires`) answers 401, 403 and 429, and 415 to a body of a type the operation
    does not take; a body can be too large (413) and, where it is JSON, malformed (400); a path
    parameter can name nothing (404). Views document their own 409 and 422.
    """

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        for method, operation in (operations or {}).items():
            statuses: list[int] = []
            if operation.get("security"):
                statuses += [401, 403, 429]
                if method.upper() in BODY_METHODS:
                    statuses.append(415)
            body = operation.get("requestBody")
            if body:
                statuses.append(413)
                if "application/json" in body.get("content", {}):
                    statuses.append(400)
            if path and "{" in path:
                statuses.append(404)
            responses = operation.setdefault("responses", {})
            for status in sorted(statuses):
                responses.setdefault(str(status), http.HTTPStatus(status).name)


class Api(flask_smorest.Api):  # type: ignore[misc]
    ERROR_SCHEMA = ProblemSchema

    def _register_error_handlers(self) -> None:
        errors.init_app(self._app)

    def handle_http_exception(self, error: HTTPException) -> ResponseReturnValue:
        # flask-smorest's own handler rebuilds the response and drops the exception's headers,
        # the Allow header of a 405 among them (RFC 9110 §15.5.6 requires it): ours keeps them.
        return errors.render_http_exception(error)

    def _register_responses(self) -> None:
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if status >= 400:
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, errors.PROBLEM_MIMETYPE)
            self.spec.components.response(status.name, response, lazy=True)
        default = {"description": "Any other error", "schema": self.ERROR_SCHEMA}
        prepare_response(default, self.spec, errors.PROBLEM_MIMETYPE)
        self.spec.components.response("DEFAULT_ERROR", default, lazy=True)


def load_json_body(schema: ma.Schema) -> dict[str, Any]:
    """Parse and validate a JSON object body with a schema instance made once.

    For hot paths: webargs (behind `blp.arguments`) copies its schema on every request. The
    view documents its body with `blp.doc(requestBody=...)` instead.
    """
    try:
        data = json.loads(_read_body())
    except (ValueError, RecursionError):  # RecursionError: nested too deeply to read
        raise errors.BadRequestError(
            "The request body is not valid JSON.", code="malformed_json"
        ) from None
    if not isinstance(data, dict):
        raise errors.ValidationError(
            "the body must be a JSON object", errors={"_body": ["not a JSON object"]}
        )
    loaded: dict[str, Any] = schema.load(data)
    return loaded


def _read_body() -> bytes:
    """The request body.

    A body with a Content-Length within the app's limit (the common case) is read straight
    from the WSGI input, which the server ends at that length (PEP 3333). Anything else, a
    body sent in chunks or one over the limit (413), goes through werkzeug's guarded stream,
    whose wrapper, and the extra read it makes to find the end, cost more than the read.
    """
    req = current_request()
    length, limit = req.content_length, req.max_content_length
    if length is None or (limit is not None and length > limit):
        return req.get_data(cache=False)
    stream = req.environ["wsgi.input"]
    body = stream.read(length)
    while len(body) < length and (more := stream.read(length - len(body))):
        body += more  # a server may hand the body over in parts
    return bytes(body)


def json_response(body: dict[str, Any], status: int = 200) -> Response:
    """A JSON response from values that are already JSON types (no schema dump on hot paths)."""
    return Response(_COMPACT.encode(body), status=status, content_type="application/json")


def create_api(app: Flask, version: str) -> Api:
    app.config.update(
        API_TITLE="agegate",
        API_VERSION=version,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=SWAGGER_ASSETS_URL,
    )
    api = Api(app, spec_kwargs={"extra_plugins": [ErrorResponsesPlugin()]})
    api.spec.components.security_scheme(
        "bearerAuth",
        {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key from `agegate keys create`",
        },
    )
    assets = Blueprint("docs_assets", __name__)

    @assets.get(SWAGGER_ASSETS_URL + "<path:filename>")
    def docs_asset(filename: str) -> ResponseReturnValue:
        return send_from_directory(str(swagger_ui_path), filename, max_age=3600)

    docs_asset.required_scope = None  # type: ignore[attr-defined]
    app.register_blueprint(assets)
    return api

"""Domain errors and the one renderer of RFC 9457 problem details.

Domain code raises the errors below; the edge maps each to a status through ``STATUS`` and
renders every error (routing 404/405, 413, 415, malformed JSON and 500 included) as
``application/problem+json`` with a stable ``code``.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import marshmallow as ma
from flask import Flask, Response, json, request
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import HTTPException, InternalServerError

PROBLEM_MIMETYPE = "application/problem+json"

log = logging.getLogger(__name__)


class AgegateError(Exception):
    """Base of every error agegate raises on purpose."""

    code = "error"

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code


class BadRequestError(AgegateError):
    code = "bad_request"


class ValidationError(AgegateError):
    code = "validation_failed"

    def __init__(
        self, detail: str, *, errors: Mapping[str, list[str]], code: str | None = None
    ) -> None:
        super().__init__(detail, code=code)
        self.errors = dict(errors)


class AuthenticationError(AgegateError):
    code = "unauthenticated"


class PermissionDeniedError(AgegateError):
    code = "forbidden"


class NotFoundError(AgegateError):
    code = "not_found"


class ConflictError(AgegateError):
    code = "conflict"


class UnsupportedMediaTypeError(AgegateError):
    code = "unsupported_media_type"


class RateLimitedError(AgegateError):
    code = "rate_limited"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class DependencyUnavailableError(AgegateError):
    code = "dependency_unavailable"


STATUS: dict[type[AgegateError], int] = {
    BadRequestError: 400,
    ValidationError: 422,
    AuthenticationError: 401,
    PermissionDeniedError: 403,
    NotFoundError: 404,
    ConflictError: 409,
    UnsupportedMediaTypeError: 415,
    RateLimitedError: 429,
    DependencyUnavailableError: 503,
}

# Stable codes for the HTTP errors Werkzeug and webargs raise outside our domain code.
HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    411: "length_required",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    431: "request_headers_too_large",
    500: "internal_error",
    501: "not_implemented",
    503: "dependency_unavailable",
}


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> Response:
    """Render one problem details response."""
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        **extensions,
    }
    if (instance := _operation_path()) is not None:
        body["instance"] = instance
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_MIMETYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _operation_path() -> str | None:
    """The operation's path with its parameters as `{name}` (`/v1/cases/{case_id}`), never
    the values sent: a path can carry anything a client typed. None off every route."""
    rule = request.url_rule
    return None if rule is None else _PARAMETER.sub(r"{\1}", rule.rule)


_PARAMETER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def render_domain_error(error: AgegateError) -> Response:
    status = next(s for cls, s in STATUS.items() if isinstance(error, cls))
    extensions: dict[str, Any] = {}
    headers: dict[str, str] = {}
    if isinstance(error, ValidationError):
        extensions["errors"] = error.errors
    if isinstance(error, RateLimitedError):
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, AuthenticationError):
        headers["WWW-Authenticate"] = 'Bearer realm="agegate"'
    return problem(status, error.code, error.detail, headers=headers, **extensions)


def render_http_exception(error: HTTPException) -> Response:
    """Problem details for Werkzeug's and webargs's HTTP errors, keeping their headers."""
    status = error.code or 500
    if status >= 500 and not isinstance(error, InternalServerError):
        status = 500
    if isinstance(error, InternalServerError) or status == 500:
        return render_unexpected(getattr(error, "original_exception", None) or error)
    # Allow on 405 (RFC 9110 §15.5.6), WWW-Authenticate and the like come from here.
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    data = getattr(error, "data", None) or {}
    messages = data.get("messages")
    if status == 400 and messages is not None:
        return problem(
            400, "malformed_json", "The request body is not valid JSON.", headers=headers
        )
    if status == 422 and messages is not None:
        return problem(
            422,
            "validation_failed",
            "The request has invalid fields; see errors.",
            headers=headers,
            errors=flatten_messages(messages),
        )
    if status == 413:
        limit = request.max_content_length
        return problem(
            413,
            "payload_too_large",
            f"The request body is larger than the limit of {limit} bytes.",
            headers=headers,
            limit_bytes=limit,
        )
    code = HTTP_CODES.get(status, f"http_{status}")
    return problem(status, code, error.description or HTTPStatus(status).phrase, headers=headers)


def render_unexpected(error: BaseException) -> Response:
    """A 500 (or 503 for a dependency that is down) that never echoes exception text."""
    if isinstance(error, OperationalError | RedisError) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    ):
        log.warning("dependency unavailable: %s", type(error).__name__)
        return problem(
            503,
            "dependency_unavailable",
            "A service agegate depends on is unavailable; try again shortly.",
            headers={"Retry-After": "5"},
        )
    if isinstance(error, StaleDataError):
        return problem(
            409, "concurrent_change", "Someone changed this at the same moment; read it again."
        )
    log.error("unhandled error", exc_info=error)
    return problem(500, "internal_error", "An unexpected error occurred; it has been logged.")


# marshmallow's message for a field the schema does not declare (the key is the name sent).
UNKNOWN_FIELD = ma.Schema._default_error_messages["unknown"]


def flatten_messages(messages: Mapping[str, Any]) -> dict[str, list[str]]:
    """webargs nests errors by location and field; clients want "field.sub" → messages.

    A field the schema does not know is counted where it was sent (`_body`, `_query`, or
    the object that held it), never named: its name is what the client sent, and a birth
    date typed as a key must not come back.
    """
    flat: dict[str, list[str]] = {}
    unknown: Counter[str] = Counter()
    for location, location_errors in messages.items():
        top = "_body" if location in ("json", "form") else f"_{location}"
        _flatten("", top, location_errors, flat, unknown)
    for place, count in unknown.items():
        flat.setdefault(place, []).append(f"{count} unknown field{'' if count == 1 else 's'}")
    return flat


def _flatten(
    prefix: str, top: str, value: Any, out: dict[str, list[str]], unknown: Counter[str]
) -> None:
    if isinstance(value, Mapping):
        for key, nested in value.items():
            if nested == [UNKNOWN_FIELD]:
                unknown[prefix or top] += 1
                continue
            _flatten(f"{prefix}.{key}" if prefix else str(key), top, nested, out, unknown)
    elif isinstance(value, list | tuple):
        for item in value:
            _flatten(prefix, top, item, out, unknown)
    else:
        out.setdefault(prefix or top, []).append(str(value))


def init_app(app: Flask) -> None:
    app.register_error_handler(AgegateError, render_domain_error)
    app.register_error_handler(HTTPException, render_http_exception)
    app.register_error_handler(Exception, render_unexpected)

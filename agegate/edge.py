"""What every request passes through on its way in and out: its id, bound to every log line
written while it runs, and its count and latency in the metrics.

The hooks look the request up once each (every use of Flask's `request` or `g` proxy is a
context lookup) and keep their values in the WSGI environ.
"""

from __future__ import annotations

import os
import re
import time

import structlog
from flask import Flask, Request, Response, request

from agegate import metrics

_REQUEST_ID = re.compile(r"[A-Za-z0-9._\-]{1,128}")
# The methods the metrics name; any other a client makes up is counted as "other", so that
# it cannot add a time series per request.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_STARTED = "agegate.started"
_ID = "agegate.request_id"


def current_request() -> Request:
    """The request itself, for code that reads several of its attributes."""
    return request._get_current_object()  # type: ignore[attr-defined,no-any-return]


def init_app(app: Flask) -> None:
    app.before_request(_begin)
    app.after_request(_end)
    app.teardown_request(lambda _exc: structlog.contextvars.clear_contextvars())


def _begin() -> None:
    req = current_request()
    environ = req.environ
    environ[_STARTED] = time.perf_counter()
    # The caller's id when it is sane, so that one id follows a request across services.
    given = environ.get("HTTP_X_REQUEST_ID", "")  # what request.headers would read
    request_id = given if _REQUEST_ID.fullmatch(given) else os.urandom(16).hex()
    environ[_ID] = request_id
    structlog.contextvars.clear_contextvars()
    case_id = (req.view_args or {}).get("case_id")
    if case_id is None:
        structlog.contextvars.bind_contextvars(request_id=request_id)
    else:
        structlog.contextvars.bind_contextvars(request_id=request_id, case_id=str(case_id))


def _end(response: Response) -> Response:
    req = current_request()
    environ = req.environ
    request_id: str | None = environ.get(_ID)
    if request_id is not None:
        response.headers["X-Request-Id"] = request_id
    rule = req.url_rule
    endpoint = rule.rule if rule is not None else "unmatched"
    method = req.method if req.method in _METHODS else "other"
    metrics.labelled(metrics.HTTP_REQUESTS, endpoint, method, str(response.status_code)).inc()
    started: float | None = environ.get(_STARTED)
    if started is not None:
        metrics.labelled(metrics.HTTP_LATENCY, endpoint, method).observe(
            time.perf_counter() - started
        )
    return response

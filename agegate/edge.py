"""What every request passes through on its way in and out: its id, bound to every log line
written while it runs, and its count and latency in the metrics."""

from __future__ import annotations

import os
import re
import time

import structlog
from flask import Flask, Response, g, request

from agegate import metrics

_REQUEST_ID = re.compile(r"[A-Za-z0-9._\-]{1,128}")


def init_app(app: Flask) -> None:
    app.before_request(_begin)
    app.after_request(_end)
    app.teardown_request(lambda _exc: structlog.contextvars.clear_contextvars())


def _begin() -> None:
    g.agegate_started = time.perf_counter()
    # The caller's id when it is sane, so that one id follows a request across services.
    given = request.environ.get("HTTP_X_REQUEST_ID", "")  # what request.headers would read
    request_id = given if _REQUEST_ID.fullmatch(given) else os.urandom(16).hex()
    g.agegate_request_id = request_id
    structlog.contextvars.clear_contextvars()
    case_id = (request.view_args or {}).get("case_id")
    if case_id is None:
        structlog.contextvars.bind_contextvars(request_id=request_id)
    else:
        structlog.contextvars.bind_contextvars(request_id=request_id, case_id=str(case_id))


def _end(response: Response) -> Response:
    request_id: str | None = g.get("agegate_request_id")
    if request_id is not None:
        response.headers["X-Request-Id"] = request_id
    rule = request.url_rule
    endpoint = rule.rule if rule is not None else "unmatched"
    method = request.method
    metrics.labelled(metrics.HTTP_REQUESTS, endpoint, method, str(response.status_code)).inc()
    started: float | None = g.get("agegate_started")
    if started is not None:
        metrics.labelled(metrics.HTTP_LATENCY, endpoint, method).observe(
            time.perf_counter() - started
        )
    return response

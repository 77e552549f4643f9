"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.typing import ResponseReturnValue
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from agegate import logs, metrics
from agegate.api_keys.auth import public
from agegate.blueprints import Blueprint
from agegate.db import SQLITE_BEGIN
from agegate.errors import problem
from agegate.extensions import db, store

blp = Blueprint("health", __name__, description="Operations: liveness, readiness and metrics")
log = logs.get_logger(__name__)


@blp.get("/healthz")
@public
@blp.response(200, description="The process is alive")
def healthz() -> dict[str, Any]:
    return {"status": "alive"}


@blp.get("/readyz")
@public
@blp.response(200, description="The database and the key-value store answer")
@blp.alt_response(503, response="SERVICE_UNAVAILABLE")
def readyz() -> ResponseReturnValue:
    checks = {"database": _check_database()}
    if store.current.name != "sql":  # the embedded store is the database itself
        checks[store.current.name] = _check_store()
    down = sorted(name for name, state in checks.items() if state != "ok")
    if down:
        return problem(
            503,
            "not_ready",
            f"unreachable: {', '.join(down)}",
            headers={"Retry-After": "5"},
            checks=checks,
        )
    return {"status": "ready", "checks": checks}


def _check_database() -> str:
    try:
        with db.engine.connect().execution_options(**{SQLITE_BEGIN: "DEFERRED"}) as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means not ready; the kind is logged, not returned
        log.warning("readiness.database_unreachable", error=type(exc).__name__)
        return "unreachable"
    return "ok"


def _check_store() -> str:
    try:
        store.current.ping()
    except Exception as exc:
        log.warning(
            "readiness.store_unreachable", store=store.current.name, error=type(exc).__name__
        )
        return "unreachable"
    return "ok"


@blp.get("/metrics")
@public
@blp.response(
    200,
    description="Prometheus text exposition: requests, age checks, the workflow",
    content_type="text/plain",
)
def prometheus_metrics() -> Response:
    return Response(metrics.exposition(db.engine), mimetype=CONTENT_TYPE_LATEST)

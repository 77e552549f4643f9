"""Checks are written in batches off the request path, and wait while the database is down."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from agegate.age_checks import recorder as recorder_module
from agegate.age_checks.models import AgeCheck, Outcome, Reason
from agegate.age_checks.recorder import CheckRecorder
from agegate.db import make_engine
from agegate.extensions import db


def row() -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "outcome": Outcome.ALLOWED,
        "reason": Reason.MEETS_MINIMUM_AGE,
        "jurisdiction_code": "DE",
        "rule_id": None,
        "rule_version": None,
        "minimum_age": 16,
        "age_capped": 21,
        "checked_at": datetime.now(UTC),
        "session_hash": None,
        "account_id": None,
    }


def count(app: Flask) -> int:
    with app.app_context(), db.new_session() as s:
        return s.scalar(select(func.count()).select_from(AgeCheck)) or 0


def test_queued_rows_reach_the_database_by_themselves(app: Flask) -> None:
    recorder = CheckRecorder(app.extensions["agegate.engine"])
    for _ in range(25):
        recorder.record(row())
    deadline = time.monotonic() + 5
    while count(app) < 25 and time.monotonic() < deadline:
        time.sleep(recorder_module.MAX_DELAY)
    assert count(app) == 25
    assert recorder.flush() == 0


def test_rows_wait_while_the_database_is_down(app: Flask) -> None:
    engine = app.extensions["agegate.engine"]
    if engine.url.get_backend_name() == "sqlite":
        down = make_engine("sqlite:////nonexistent-dir.invalid/agegate.db", 1)
    else:
        down = make_engine(engine.url.set(port=9).render_as_string(hide_password=False), 1)
    recorder = CheckRecorder(down)
    recorder._enqueue(row())  # as record() would, without the background thread
    recorder._enqueue(row())
    assert recorder.flush() == 0
    recorder._engine = engine  # the database is back
    assert recorder.flush() == 2
    assert count(app) == 2
    down.dispose()


def test_a_batch_is_stored_column_for_column(app: Flask) -> None:
    # On PostgreSQL the batch goes in by COPY: enums must land as their values, timestamps as
    # the same instants and text as sent, exactly as the ORM would have written them.
    recorder = CheckRecorder(app.extensions["agegate.engine"])
    queued = [row(), {**row(), "outcome": Outcome.DENIED, "reason": Reason.BELOW_MINIMUM_AGE}]
    queued[1].update(rule_id=7, rule_version=2, age_capped=11, session_hash="ab" * 32)
    queued[1].update(
        account_id="acct-7.example", checked_at=datetime(2026, 2, 28, 23, 59, tzinfo=UTC)
    )
    # Characters COPY's text format must escape; no input reaches this column with them, but
    # the writer must not depend on that.
    queued[0].update(jurisdiction_code="a\\b\tc\nd\re\\N")
    for values in queued:
        recorder._enqueue(values)
    assert recorder.flush() == 2
    with app.app_context(), db.new_session() as s:
        stored = {
            check.id: {c.name: getattr(check, c.key) for c in AgeCheck.__table__.columns}
            for check in s.scalars(select(AgeCheck))
        }
    assert stored == {values["id"]: values for values in queued}


def test_a_row_written_at_once_is_committed_when_it_returns(app: Flask) -> None:
    recorder = CheckRecorder(app.extensions["agegate.engine"])
    try:
        recorder.write_now(row())
        assert count(app) == 1  # another connection sees it, with nothing queued
        assert recorder.flush() == 0
    finally:
        recorder.close()


def test_a_row_written_at_once_survives_a_connection_the_server_dropped(app: Flask) -> None:
    """On PostgreSQL the recorder keeps a connection of its own for these rows; when the
    server has ended it (an idle timeout, a restart), the next row goes on a new one."""
    engine = app.extensions["agegate.engine"]
    recorder = CheckRecorder(engine)
    try:
        recorder.write_now(row())
        if engine.dialect.name == "postgresql":
            own = recorder._direct.info.backend_pid
            with engine.connect() as conn:
                conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(own)})")
        recorder.write_now(row())
        assert count(app) == 2
    finally:
        recorder.close()


def test_a_refused_row_is_an_error_the_caller_sees(app: Flask) -> None:
    url = app.extensions["agegate.engine"].url
    if url.get_backend_name() == "sqlite":
        down = make_engine("sqlite:////nonexistent-dir.invalid/agegate.db", 1)
    else:
        down = make_engine(url.set(port=9).render_as_string(hide_password=False), 1)
    recorder = CheckRecorder(down)
    try:
        with pytest.raises(recorder_module.RecordRefused):
            recorder.write_now(row())
    finally:
        recorder.close()
        down.dispose()
    assert count(app) == 0

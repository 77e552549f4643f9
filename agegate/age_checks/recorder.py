"""Writes age-check records: allowed checks in batches off the request path, denials at once.

An allowed check changes nothing: its record is an audit trail, so it is queued in the
process and written by a background thread at most `MAX_DELAY` seconds later, many rows
per statement (one COPY on PostgreSQL, which costs both sides a fraction of an INSERT's
per-row work). What a worker killed with SIGKILL loses is its queue of allowed checks from
the last `MAX_DELAY` seconds; a graceful stop flushes it.

A denial is different: it is the lockout's truth for processes that start later or miss its
message, so `write_or_queue` commits it as soon as its answer has gone, before the worker
takes another request. On PostgreSQL that is one INSERT on a connection in autocommit mode,
sent through the driver: SQLAlchemy's execution layer and isolation-level switching cost
several times the statement itself. If the database refuses it, the row joins the queue and
is retried with the next batch. (A denial that flags an account is written with its flag, in
the request's transaction, by the service instead.)
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy import Connection, Dialect, Engine, create_engine, event, insert
from sqlalchemy.exc import DBAPIError

from agegate.age_checks.models import AgeCheck

MAX_DELAY = 0.2
MAX_BATCH = 1000
# Rows kept for a retry while the database is down; past it, the oldest are dropped (logged).
MAX_PENDING = 100_000
log = logging.getLogger(__name__)


class CheckRecorder:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._autocommit = (
            _autocommit_engine(engine) if engine.dialect.name == "postgresql" else None
        )
        # The statement SQLAlchemy would send for one row, and its values' processing, once.
        self._insert = str(insert(AgeCheck).compile(dialect=engine.dialect))
        self._processors = _processors(engine.dialect)
        self._queue: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._pending: list[dict[str, Any]] = []
        self._flush_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._owner_pid: int | None = None

    def record(self, values: dict[str, Any]) -> None:
        """Queue one check's row (the columns of AgeCheck)."""
        if self._owner_pid != os.getpid():
            self._start()
        self._queue.put(values)

    def write(self, values: dict[str, Any]) -> None:
        """Insert one check's row and commit it before returning."""
        if self._autocommit is None:  # SQLite: a short transaction of its own
            with self._engine.begin() as conn:
                conn.execute(insert(AgeCheck), [values])
            return
        row = _row(values, self._processors)
        try:
            pooled = self._autocommit.raw_connection()
            driver: psycopg.Connection[Any] = pooled.driver_connection  # type: ignore[assignment]
            try:
                driver.execute(self._insert, row)
            except psycopg.Error as exc:
                if driver.closed:
                    pooled.invalidate(exc)
                raise
            finally:
                pooled.close()
        except psycopg.Error as exc:
            # Raised as SQLAlchemy would raise it, so that the edge answers 503 when the
            # database is down; the parameters stay out of the message.
            raise DBAPIError.instance(self._insert, None, exc, psycopg.Error) from exc

    def write_or_queue(self, values: dict[str, Any]) -> None:
        """write(), for a row whose answer has already gone: if the database refuses it, it
        is queued and retried with the next batch instead of being lost."""
        try:
            self.write(values)
        except Exception as exc:
            log.warning("age checks: a denial waits for the database (%s)", type(exc).__name__)
            self.record(values)

    def flush(self) -> int:
        """Insert everything queued so far; returns the number of rows written."""
        with self._flush_lock:
            while len(self._pending) < MAX_BATCH * 10:
                try:
                    self._pending.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if not self._pending:
                return 0
            rows, written = self._pending, 0
            try:
                with self._engine.begin() as conn:
                    if conn.dialect.name == "postgresql":
                        _copy(conn, rows, self._processors)
                    else:
                        for start in range(0, len(rows), MAX_BATCH):
                            conn.execute(insert(AgeCheck), rows[start : start + MAX_BATCH])
                written, self._pending = len(rows), []
            except Exception as exc:
                log.warning(
                    "age checks: %d records wait for the database (%s)",
                    len(rows),
                    type(exc).__name__,
                )
                if len(rows) > MAX_PENDING:
                    log.error("age checks: dropping %d unwritten records", len(rows) - MAX_PENDING)
                    self._pending = rows[-MAX_PENDING:]
            return written

    def _start(self) -> None:
        with self._start_lock:
            if self._owner_pid == os.getpid():
                return
            # A fork copies the queue but not the thread: this process gets its own.
            self._owner_pid = os.getpid()
            self._queue = queue.SimpleQueue()
            self._pending = []
            threading.Thread(target=self._run, name="age-check-recorder", daemon=True).start()
            atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            time.sleep(MAX_DELAY)
            try:
                self.flush()
            except Exception:  # the thread must outlive any one failure
                log.exception("age checks: recorder failed")


_COLUMNS = AgeCheck.__table__.columns
_NAMES = ", ".join(column.name for column in _COLUMNS)
_COPY = f"COPY {AgeCheck.__tablename__} ({_NAMES}) FROM STDIN"
Processors = list[tuple[str, Callable[[Any], Any] | None]]


def _processors(dialect: Dialect) -> Processors:
    # Made once per recorder. Each value goes through its column type's bind processing, as
    # an ORM or Core INSERT's would: enums become their stored values, timestamps must be
    # aware and become UTC.
    return [(c.name, c.type.dialect_impl(dialect).bind_processor(dialect)) for c in _COLUMNS]


def _row(values: dict[str, Any], processors: Processors) -> dict[str, Any]:
    return {
        name: process(values[name]) if process else values[name] for name, process in processors
    }


def _copy(conn: Connection, rows: list[dict[str, Any]], processors: Processors) -> None:
    """Stream rows into the table with COPY, inside conn's transaction."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor, cursor.copy(_COPY) as copy:
        for values in rows:
            copy.write_row(list(_row(values, processors).values()))


def _autocommit_engine(engine: Engine) -> Engine:
    """A small pool of PostgreSQL connections that stay in autocommit mode, disposed with engine."""
    autocommit = create_engine(
        engine.url,
        isolation_level="AUTOCOMMIT",
        pool_size=1,
        max_overflow=engine.pool.size(),  # type: ignore[attr-defined]
        pool_recycle=1800,
        # In autocommit mode there is no transaction to roll back when a connection returns.
        pool_reset_on_return=None,
        connect_args={"connect_timeout": 5},
    )
    event.listen(engine, "engine_disposed", lambda _conn: autocommit.dispose())
    return autocommit

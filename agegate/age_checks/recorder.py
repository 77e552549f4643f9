"""Writes age-check records: allowed checks in batches, off the request path; denials at once.

An allowed check's record is queued in the process and written by a background thread at
most `MAX_DELAY` seconds later, many rows per statement (one COPY on PostgreSQL, which costs
both sides a fraction of an INSERT's per-row work). What a worker killed with SIGKILL loses
is its queue of the last `MAX_DELAY` seconds; a graceful stop flushes it. If the database
refuses a batch, its rows wait (up to `MAX_PENDING`) and go with the next one.

A denial's record is the truth its lockout rests on (lockouts.py), so it is written before
the denial is answered (`write_now`): a process that starts a moment later finds it
(docs/decisions/0023-denials-written-before-their-answer.md). Only while the database
refuses it does it wait in the queue like an allowed check's.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import psycopg
from sqlalchemy import Connection, Dialect, Engine, insert
from sqlalchemy.exc import DBAPIError

from agegate.age_checks.models import AgeCheck

MAX_DELAY = 0.2
MAX_BATCH = 1000
# Rows kept for a retry while the database is down; past it, the oldest are dropped (logged).
MAX_PENDING = 100_000
log = logging.getLogger(__name__)


# What the queue holds: on PostgreSQL a row already in COPY's text format, elsewhere its values.
Row = str | dict[str, Any]


class RecordRefused(Exception):
    """The database did not take a record that had to be written at once."""


class CheckRecorder:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # Each value's processing, as SQLAlchemy would do it for an INSERT, made once.
        self._processors = _processors(engine.dialect)
        self._copies = engine.dialect.name == "postgresql"
        # A denial's INSERT as SQLAlchemy writes it for this database (named parameters).
        self._insert = str(insert(AgeCheck).compile(dialect=engine.dialect))
        self._queue: queue.SimpleQueue[Row] = queue.SimpleQueue()
        self._pending: list[Row] = []
        self._flush_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._owner_pid: int | None = None
        self._direct: Any = None  # a psycopg connection in autocommit, for denials
        self._direct_lock = threading.Lock()

    def record(self, values: dict[str, Any]) -> None:
        """Queue one check's row (the columns of AgeCheck)."""
        if self._owner_pid != os.getpid():
            self._start()
        self._enqueue(values)

    def write_now(self, values: dict[str, Any]) -> None:
        """Insert one check's row at once, committed; raises RecordRefused if it is not."""
        try:
            if self._copies:
                self._insert_directly(values)
            else:
                with self._engine.begin() as conn:
                    conn.execute(insert(AgeCheck), [values])
        except (DBAPIError, psycopg.Error) as exc:  # what the database says, not a bug of ours
            raise RecordRefused(type(exc).__name__) from exc

    def close(self) -> None:
        """Write what is queued and close the recorder's own connection (tests, shutdown)."""
        self.flush()
        with self._direct_lock:
            if self._direct is not None:
                self._direct.close()
                self._direct = None

    def _insert_directly(self, values: dict[str, Any]) -> None:
        """On PostgreSQL: one prepared INSERT in autocommit, on a connection of the recorder's
        own. Through the pool and a transaction it cost a denial about three times the CPU,
        and three round trips instead of one."""
        params = {
            name: values[name] if p is None else p(values[name]) for name, p in self._processors
        }
        with self._direct_lock:
            for attempt in (1, 2):  # a connection the server dropped while idle: once more
                if self._direct is None:
                    raw = self._engine.raw_connection()
                    direct: Any = raw.driver_connection
                    raw.detach()  # ours for good, outside the pool's count and resets
                    direct.autocommit = True
                    # Visible to every session once committed; made durable by the WAL writer
                    # within a fraction of a second instead of before the answer, which halves
                    # the wait. The store keeps the same lockout for the window meanwhile
                    # (lockouts.record_denial), against a crash of PostgreSQL in between.
                    direct.execute("SET synchronous_commit = off")
                    self._direct = direct
                try:
                    self._direct.execute(self._insert, params, prepare=True)
                    return
                except psycopg.Error:
                    self._direct.close()
                    self._direct = None
                    if attempt == 2:
                        raise

    def _enqueue(self, values: dict[str, Any]) -> None:
        # On PostgreSQL the row is put in COPY's form here, by the request that made it: done
        # for a whole batch at once, the background thread held the interpreter lock for
        # milliseconds, and the request being served waited that long.
        self._queue.put(_copy_line(values, self._processors) if self._copies else values)

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
                    # One recorder queues one form of row, the one its database takes.
                    if self._copies:
                        _copy(conn, cast(list[str], rows))
                    else:
                        values = cast(list[dict[str, Any]], rows)
                        for start in range(0, len(values), MAX_BATCH):
                            conn.execute(insert(AgeCheck), values[start : start + MAX_BATCH])
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


def _copy(conn: Connection, lines: list[str]) -> None:
    """Stream rows, already in COPY's text format, into the table, inside conn's transaction."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor, cursor.copy(_COPY) as copy:
        copy.write("".join(lines))


# COPY's text format: values separated by tabs, \N for NULL, and backslash escapes for the
# characters that would end a value or a row (PostgreSQL manual, COPY, "Text Format").
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]")  # translate() is slow: most values need none


def _copy_line(values: dict[str, Any], processors: Processors) -> str:
    fields = []
    for name, process in processors:
        value = values[name] if process is None else process(values[name])
        if value is None:
            fields.append("\\N")
        else:  # timestamps are aware and in UTC by now: their text carries the +00:00
            text = str(value)
            fields.append(text.translate(_COPY_ESCAPES) if _NEEDS_ESCAPE.search(text) else text)
    return "\t".join(fields) + "\n"

"""Writes allowed checks to the database in batches, off the request path.

An allowed check changes nothing: its record is an audit trail, so it is queued in the
process and written by a background thread at most `MAX_DELAY` seconds later, many rows
per statement (one COPY on PostgreSQL, which costs both sides a fraction of an INSERT's
per-row work). A denial is different (it is the lockout's fallback and may flag an account)
and is committed before its response leaves. What a worker killed with SIGKILL loses is its
queue of allowed checks from the last `MAX_DELAY` seconds; a graceful stop flushes it.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from typing import Any

from sqlalchemy import Connection, Engine, insert

from agegate.age_checks.models import AgeCheck

MAX_DELAY = 0.2
MAX_BATCH = 1000
# Rows kept for a retry while the database is down; past it, the oldest are dropped (logged).
MAX_PENDING = 100_000
log = logging.getLogger(__name__)


class CheckRecorder:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
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
                        _copy(conn, rows)
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
_COPY = f"COPY {AgeCheck.__tablename__} ({', '.join(c.name for c in _COLUMNS)}) FROM STDIN"


def _copy(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Stream rows into the table with COPY, inside conn's transaction."""
    # Each value goes through its column type's bind processing, as an INSERT's would: enums
    # become their stored values, timestamps must be timezone-aware and become UTC.
    dialect = conn.dialect
    columns = [(c.name, c.type.dialect_impl(dialect).bind_processor(dialect)) for c in _COLUMNS]
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor, cursor.copy(_COPY) as copy:
        for values in rows:
            copy.write_row([process(values[n]) if process else values[n] for n, process in columns])

"""The in-memory copy of the table that every read uses, kept fresh across processes.

A commit that changes the table writes a new token to the store (Redis in production); each
process compares tokens at most once a second and reloads when the token moved. If the token
is lost (Redis flushed or down), each process also compares the database's revision every few
seconds, so a change is seen everywhere within `POLL_SECONDS` at worst.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

from flask import Flask, current_app, has_app_context
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from agegate.db import SQLITE_BEGIN
from agegate.jurisdictions import service
from agegate.jurisdictions.rules import RuleTable
from agegate.store import Store

TOKEN_KEY = "jurisdictions:token"  # noqa: S105 (a change marker, not a secret)
TOKEN_TTL_SECONDS = 7 * 24 * 3600
CHECK_SECONDS = 1.0
POLL_SECONDS = 5.0

log = logging.getLogger(__name__)


class JurisdictionCache:
    def __init__(self, engine: Engine, store: Store) -> None:
        self._engine = engine
        self._store = store
        self._lock = threading.Lock()
        self._table: RuleTable | None = None
        self._token: str | None = None
        self._next_check = 0.0
        self._next_poll = 0.0

    def table(self) -> RuleTable:
        """The current table; at most a second old in this process after a change elsewhere."""
        table, now = self._table, time.monotonic()
        if table is not None and now < self._next_check:
            return table
        with self._lock:
            if self._table is None or time.monotonic() >= self._next_check:
                self._refresh(time.monotonic())
            assert self._table is not None
            return self._table

    def changed(self) -> None:
        """Called after a commit that changed the table: reload here, tell the others."""
        self._next_check = 0.0
        self._table = None
        try:
            self._store.put(TOKEN_KEY, uuid.uuid4().hex, TOKEN_TTL_SECONDS)
        except Exception as exc:  # the database poll still carries the change
            log.warning("jurisdictions: could not publish a change token (%s)", type(exc).__name__)

    def _refresh(self, now: float) -> None:
        self._next_check = now + CHECK_SECONDS
        token = self._read_token()
        stale = self._table is None or (token is not None and token != self._token)
        with self._session() as session:
            if not stale and now >= self._next_poll:
                self._next_poll = now + POLL_SECONDS
                stale = self._table is None or service.revision(session) != self._table.revision
            if stale:
                self._table = service.load_table(session)
                self._token = token

    def _read_token(self) -> str | None:
        try:
            return self._store.get(TOKEN_KEY)
        except Exception as exc:
            log.warning("jurisdictions: change token unavailable (%s)", type(exc).__name__)
            return None

    def _session(self) -> Session:
        return Session(self._engine.execution_options(**{SQLITE_BEGIN: "DEFERRED"}))


def init_app(app: Flask, engine: Engine, store: Store) -> None:
    app.extensions["agegate.jurisdictions"] = JurisdictionCache(engine, store)


def current_table() -> RuleTable:
    cache: JurisdictionCache = current_app.extensions["agegate.jurisdictions"]
    return cache.table()


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint: the real commit is yet to come
        return
    if session.info.pop(service.CHANGED, False) and has_app_context():
        cache: JurisdictionCache | None = current_app.extensions.get("agegate.jurisdictions")
        if cache is not None:
            cache.changed()


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(service.CHANGED, None)

"""Declarative base, shared column types and engine construction."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Connection,
    DateTime,
    Dialect,
    Engine,
    MetaData,
    create_engine,
    event,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: agegate stores only timezone-aware instants")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# Execution option: how a SQLite transaction begins ("IMMEDIATE" unless told "DEFERRED").
SQLITE_BEGIN = "sqlite_begin"

JSONType = JSON().with_variant(JSONB(), "postgresql")


def enum_column(enum_cls: type[enum.Enum], *, checked: bool = True) -> SAEnum:
    """An enum stored by its value in a VARCHAR with a CHECK constraint (no native types).
    Unchecked, the column can be added and dropped in place on SQLite (a CHECK would make
    the migration copy the table, which its foreign keys forbid once it holds rows)."""
    return SAEnum(
        enum_cls,
        values_callable=lambda members: [m.value for m in members],
        native_enum=False,
        create_constraint=checked,
        length=32,
        name=enum_cls.__name__.lower(),
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSONType}  # noqa: RUF012


_AFTER_COMMIT = "agegate_after_commit"
log = logging.getLogger(__name__)


def call_after_commit(session: Session, hook: Callable[[], None]) -> None:
    """Run `hook` once the session's current transaction has committed (dropped on rollback).

    For work that must not happen unless the data it follows is durable, and that must not
    hold the database's locks: Redis writes, wake-up messages.
    """
    session.info.setdefault(_AFTER_COMMIT, []).append(hook)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint: the real commit is yet to come
        return
    for hook in session.info.pop(_AFTER_COMMIT, []):
        try:
            hook()
        except Exception:  # the commit stands; a hook is best-effort by contract
            log.exception("after-commit hook failed")


@event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    session.info.pop(_AFTER_COMMIT, None)


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_engine(url: str, pool_size: int) -> Engine:
    """An engine tuned for the backend: WAL and a busy timeout on SQLite, a sized pool on PostgreSQL."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # No pre-ping: it would cost a round trip on every checkout. A connection found dead
    # fails its request with a 503 and SQLAlchemy then replaces the whole pool, so after a
    # PostgreSQL restart each process answers at most one request with 503.
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5},
    )


def _sqlite_begin(conn: Connection) -> None:
    # pysqlite's own transaction handling is switched off in _sqlite_pragmas, so the
    # transaction begins here. IMMEDIATE takes the write lock up front: a deferred transaction
    # that reads and then writes fails at once (no busy wait) if another writer committed in
    # between. Short read-only work asks for DEFERRED so it never waits for a writer.
    mode = conn.get_execution_options().get(SQLITE_BEGIN, "IMMEDIATE")
    conn.exec_driver_sql(f"BEGIN {mode}")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()

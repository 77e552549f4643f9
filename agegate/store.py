"""The small key-value store behind lockouts and rate limits: Redis, or SQL in the embedded default.

Keys are opaque strings chosen by the callers (never personal data: callers hash first).
Nothing kept here is the source of truth: the database is. Both implementations pass the
same contract tests (tests/contract/test_store.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

import redis
from sqlalchemy import Engine, Integer, String, Text, case, cast, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from agegate.db import SQLITE_BEGIN, Base, utcnow

KEY_PREFIX = "agegate:"


class Store(Protocol):
    name: str

    def ping(self) -> None:
        """Raise if the store cannot be reached."""

    def get(self, key: str) -> str | None:
        """The live value of key, or None."""

    def put(self, key: str, value: str, ttl_seconds: int) -> None:
        """Set key to value, expiring after ttl_seconds."""

    def incr(self, key: str, ttl_seconds: int) -> int:
        """Add one to a counter that expires ttl_seconds after its first increment."""

    def delete(self, key: str) -> None:
        """Remove key if present."""


class StoreEntry(Base):
    __tablename__ = "store_entries"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class RedisStore:
    name = "redis"

    def __init__(self, url: str, pool_size: int) -> None:
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=pool_size,
            timeout=2,
            socket_timeout=2,
            socket_connect_timeout=2,
            health_check_interval=30,
            decode_responses=True,
        )
        self.client = redis.Redis(connection_pool=pool)

    def ping(self) -> None:
        self.client.ping()

    def get(self, key: str) -> str | None:
        value = self.client.get(KEY_PREFIX + key)
        return None if value is None else str(value)

    def put(self, key: str, value: str, ttl_seconds: int) -> None:
        self.client.set(KEY_PREFIX + key, value, ex=ttl_seconds)

    def incr(self, key: str, ttl_seconds: int) -> int:
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(KEY_PREFIX + key)
        pipe.expire(KEY_PREFIX + key, ttl_seconds, nx=True)
        count, _ = pipe.execute()
        return int(count)

    def delete(self, key: str) -> None:
        self.client.unlink(KEY_PREFIX + key)


class SQLStore:
    """The embedded default's stand-in for Redis: one table, short transactions of its own."""

    name = "sql"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    def ping(self) -> None:
        with self.engine.connect().execution_options(**{SQLITE_BEGIN: "DEFERRED"}) as conn:
            conn.execute(select(1))

    def get(self, key: str) -> str | None:
        query = select(StoreEntry.value).where(
            StoreEntry.key == key, StoreEntry.expires_at > utcnow()
        )
        with self.engine.connect().execution_options(**{SQLITE_BEGIN: "DEFERRED"}) as conn:
            return conn.execute(query).scalar_one_or_none()

    def put(self, key: str, value: str, ttl_seconds: int) -> None:
        expires = utcnow() + timedelta(seconds=ttl_seconds)
        stmt = self._insert(StoreEntry).values(key=key, value=value, expires_at=expires)
        stmt = stmt.on_conflict_do_update(
            index_elements=[StoreEntry.key], set_={"value": value, "expires_at": expires}
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def incr(self, key: str, ttl_seconds: int) -> int:
        now = utcnow()
        expires = now + timedelta(seconds=ttl_seconds)
        stmt = self._insert(StoreEntry).values(key=key, value="1", expires_at=expires)
        excluded = stmt.excluded
        live = StoreEntry.expires_at > now
        # Values are text (the interface is Redis-like); the counter is cast and cast back.
        upsert = stmt.on_conflict_do_update(
            index_elements=[StoreEntry.key],
            set_={
                "value": cast(case((live, cast(StoreEntry.value, Integer) + 1), else_=1), Text),
                "expires_at": case((live, StoreEntry.expires_at), else_=excluded.expires_at),
            },
        ).returning(StoreEntry.value)
        with self.engine.begin() as conn:
            return int(conn.execute(upsert).scalar_one())

    def delete(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(StoreEntry).where(StoreEntry.key == key))

    def delete_expired(self) -> int:
        """Remove expired entries; the worker's sweep calls this now and then."""
        with self.engine.begin() as conn:
            result = conn.execute(delete(StoreEntry).where(StoreEntry.expires_at <= utcnow()))
            return result.rowcount

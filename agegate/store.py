"""The small key-value store behind lockouts and rate limits: Redis, or SQL in the embedded default.

Keys are opaque strings chosen by the callers (never personal data: callers hash first).
Nothing kept here is the source of truth: the database is. Both implementations pass the
same contract tests (tests/contract/test_store.py).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

import redis
from sqlalchemy import Engine, Integer, String, Text, case, cast, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from agegate.db import SQLITE_BEGIN, Base, utcnow

KEY_PREFIX = "agegate:"
PUBLISHER = "agegate-publisher"  # the client names of RedisStore's dedicated connections
SUBSCRIBER = "agegate-subscriber"
SWEEP_SECONDS = 60.0
log = logging.getLogger(__name__)


class Inbox(Protocol):
    @property
    def connected(self) -> bool:
        """Whether the subscription stands: no message published since it was confirmed is lost."""

    @property
    def generation(self) -> int:
        """How many times the subscription has been confirmed (each one after a loss)."""

    def drain(self) -> list[str]:
        """The messages that have arrived since the last call, oldest first, without waiting."""


class Store(Protocol):
    name: str

    def ping(self) -> None:
        """Raise if the store cannot be reached."""

    def get(self, key: str) -> str | None:
        """The live value of key, or None."""

    def get_many(self, keys: list[str]) -> list[str | None]:
        """The live values of several keys at once (one round trip), None where absent."""

    def put(self, key: str, value: str, ttl_seconds: int) -> None:
        """Set key to value, expiring after ttl_seconds."""

    def incr(self, key: str, ttl_seconds: int, amount: int = 1) -> int:
        """Add to a counter that expires ttl_seconds after its first increment; the new total."""

    def delete(self, key: str) -> None:
        """Remove key if present."""

    def scan(self, prefix: str) -> dict[str, str]:
        """Every live key that starts with prefix, with its value (for small key sets)."""

    def publish(self, channel: str, message: str) -> None:
        """Tell every listener of channel; returns once the store has queued the message to
        each of them (raises if it could not)."""

    def put_and_publish(
        self, entries: dict[str, tuple[str, int]], channel: str, messages: list[str]
    ) -> None:
        """put() each key → (value, ttl_seconds) and publish each message, in one round trip
        where the store allows; returns once the store has done both (raises if not)."""

    def close(self) -> None:
        """Release connections and stop listeners."""

    def listen(
        self, channel: str, on_message: Callable[[str], None], on_reconnect: Callable[[], None]
    ) -> bool:
        """Call on_message for each message on channel from a background thread; on_reconnect
        after each (re)subscription, when messages may have been missed. False if this store
        cannot push (its users poll instead)."""

    def subscribe(self, channel: str, on_reconnect: Callable[[], None]) -> Inbox | None:
        """Keep channel's messages until the caller drains them: unlike listen, no thread is
        woken per message. on_reconnect runs after each (re)subscription, when messages may
        have been missed. None if this store cannot push (its users poll instead)."""


class StoreEntry(Base):
    __tablename__ = "store_entries"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(index=True)


_INCR_WITH_TTL = """
local count = redis.call('INCRBY', KEYS[1], ARGV[2])
if count == tonumber(ARGV[2]) then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


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
        # Keys live in their database, but pub/sub channels are server-wide: name the database
        # in them, so that deployments sharing a server do not hear each other's messages.
        self._channels = f"{KEY_PREFIX}db{pool.connection_kwargs.get('db', 0)}:"
        self._incr = self.client.register_script(_INCR_WITH_TTL)
        self._closed = threading.Event()
        self._publisher: redis.connection.AbstractConnection | None = None
        self._publisher_pid = 0
        self._publish_lock = threading.Lock()
        self._inboxes: list[RedisInbox] = []

    def ping(self) -> None:
        self.client.ping()

    def get(self, key: str) -> str | None:
        value = self.client.get(KEY_PREFIX + key)
        return None if value is None else str(value)

    def get_many(self, keys: list[str]) -> list[str | None]:
        values = self.client.mget([KEY_PREFIX + key for key in keys])
        return [None if v is None else str(v) for v in values]

    def put(self, key: str, value: str, ttl_seconds: int) -> None:
        self.client.set(KEY_PREFIX + key, value, ex=ttl_seconds)

    def incr(self, key: str, ttl_seconds: int, amount: int = 1) -> int:
        # One atomic command (a script) instead of MULTI/INCRBY/EXPIRE/EXEC.
        return int(self._incr(keys=[KEY_PREFIX + key], args=[ttl_seconds, amount]))

    def delete(self, key: str) -> None:
        self.client.unlink(KEY_PREFIX + key)

    def scan(self, prefix: str) -> dict[str, str]:
        keys = list(self.client.scan_iter(match=KEY_PREFIX + prefix + "*", count=1000))
        found: dict[str, str] = {}
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            for key, value in zip(chunk, self.client.mget(chunk), strict=True):
                if value is not None:  # expired between the scan and the read
                    found[str(key).removeprefix(KEY_PREFIX)] = str(value)
        return found

    def publish(self, channel: str, message: str) -> None:
        self._send([("PUBLISH", self._channels + channel, message)])

    def put_and_publish(
        self, entries: dict[str, tuple[str, int]], channel: str, messages: list[str]
    ) -> None:
        commands: list[tuple[str | int, ...]] = [
            ("SET", KEY_PREFIX + key, value, "EX", ttl) for key, (value, ttl) in entries.items()
        ]
        commands += [("PUBLISH", self._channels + channel, message) for message in messages]
        self._send(commands)

    def _send(self, commands: list[tuple[str | int, ...]]) -> None:
        """Send commands in one go and read every reply. Once a PUBLISH's reply has come, Redis
        has queued the message to every subscriber, ahead of anything they ask afterwards: a
        lockout relies on that, a denial being answered only after its message is out. They
        go on a connection of their own, as raw bytes: through the client and its pool a
        publish cost about half as much CPU again."""
        with self._publish_lock:
            for attempt in (1, 2):  # a connection Redis dropped while idle: once more
                if self._publisher is None or self._publisher_pid != os.getpid():
                    self._publisher = self.dedicated_connection(PUBLISHER)
                    self._publisher_pid = os.getpid()
                publisher = self._publisher
                try:
                    publisher.send_packed_command(
                        publisher.pack_commands(commands), check_health=False
                    )
                    for _ in commands:
                        publisher.read_response()
                    return
                except Exception as exc:  # replies may be left unread: never reuse it
                    publisher.disconnect()
                    self._publisher = None
                    lost = isinstance(exc, redis.ConnectionError | redis.TimeoutError | OSError)
                    if attempt == 2 or not lost:
                        raise

    def dedicated_connection(self, name: str) -> redis.connection.AbstractConnection:
        """A connection of its own, outside the pool, named so that CLIENT LIST shows what it
        is. No health checks: their PING would not get a plain PONG on a subscriber's."""
        pool = self.client.connection_pool
        kwargs = {**pool.connection_kwargs, "health_check_interval": 0, "client_name": name}
        connection: redis.connection.AbstractConnection = pool.connection_class(**kwargs)
        connection.connect()
        return connection

    def subscribe(self, channel: str, on_reconnect: Callable[[], None]) -> RedisInbox:
        inbox = RedisInbox(self, self._channels + channel, on_reconnect)
        self._inboxes.append(inbox)
        return inbox

    def listen(
        self, channel: str, on_message: Callable[[str], None], on_reconnect: Callable[[], None]
    ) -> bool:
        thread = threading.Thread(
            target=self._listen,
            args=(self._channels + channel, on_message, on_reconnect),
            name=f"store-listen-{channel}",
            daemon=True,
        )
        thread.start()
        return True

    def _listen(
        self, channel: str, on_message: Callable[[str], None], on_reconnect: Callable[[], None]
    ) -> None:
        while not self._closed.is_set():
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(channel)
                on_reconnect()
                for message in pubsub.listen():
                    on_message(str(message["data"]))
            except Exception as exc:  # Redis went away: resubscribe, and the caller resyncs
                if not self._closed.is_set():
                    log.warning(
                        "store: listener on %s lost (%s); retrying", channel, type(exc).__name__
                    )
                    self._closed.wait(1)
            finally:
                pubsub.close()

    def close(self) -> None:
        """Stop listeners and close the pool (tests, graceful shutdown)."""
        self._closed.set()
        for inbox in self._inboxes:
            inbox.close()
        with self._publish_lock:
            if self._publisher is not None:
                self._publisher.disconnect()
                self._publisher = None
        self.client.close()


class RedisInbox:
    """One channel's messages, left in the socket until the owner drains them.

    No thread reads them. A listener thread blocked on the socket is woken for every message,
    and in a gunicorn worker each wake-up takes the interpreter lock from the request being
    served; with every worker of every machine hearing every denial, that cost about 0.14 ms
    of CPU per worker per denial. Here the request that needs the messages reads all that
    have arrived in one go, which also means that it sees everything published before it
    asked. A thread only (re)subscribes, and sleeps while the subscription stands.
    """

    def __init__(self, store: RedisStore, channel: str, on_reconnect: Callable[[], None]) -> None:
        self._store = store
        self._channel = channel
        self._on_reconnect = on_reconnect
        self._connection: redis.connection.AbstractConnection | None = None
        self._lost = threading.Event()
        self._lost.set()
        self._draining = threading.Lock()
        self.generation = 0
        self._thread = threading.Thread(
            target=self._keep_subscribed, name=f"store-subscribe-{channel}", daemon=True
        )
        self._thread.start()

    @property
    def connected(self) -> bool:
        return self._connection is not None

    def drain(self) -> list[str]:
        connection = self._connection
        # Nothing while (re)subscribing: on_reconnect tells the owner to catch up another way.
        # One drainer at a time; another thread draining meanwhile gets the messages instead.
        if connection is None or not self._draining.acquire(blocking=False):
            return []
        messages: list[str] = []
        try:
            while connection.can_read(timeout=0):
                kind, _channel, data = connection.read_response(push_request=True)
                if kind == "message":
                    messages.append(str(data))
        except Exception as exc:  # Redis went away: the thread subscribes again
            log.warning("store: subscription to %s lost (%s)", self._channel, type(exc).__name__)
            self._drop(connection)
        finally:
            self._draining.release()
        return messages

    def close(self) -> None:
        with self._draining:  # not under a drain, which would reconnect a closed connection
            connection = self._connection
            if connection is not None:
                self._drop(connection)
        self._lost.set()  # wakes the thread, which sees the store closed
        # and lets what it runs after a subscription (a database read) finish first, so that
        # the caller may close what that uses.
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def _drop(self, connection: redis.connection.AbstractConnection) -> None:
        self._connection = None
        connection.disconnect()
        self._lost.set()

    def _keep_subscribed(self) -> None:
        closed = self._store._closed
        while True:
            self._lost.wait()
            if closed.is_set():
                return
            try:
                connection = self._store.dedicated_connection(SUBSCRIBER)
                connection.send_command("SUBSCRIBE", self._channel)
                # The confirmation: from here on, nothing is missed. (Messages are pushes in
                # RESP3, plain replies in RESP2; push_request reads either.)
                connection.read_response(push_request=True)
            except Exception as exc:
                log.warning(
                    "store: could not subscribe to %s (%s); retrying",
                    self._channel,
                    type(exc).__name__,
                )
                closed.wait(1)
                continue
            if closed.is_set():
                connection.disconnect()
                return
            self._lost.clear()
            self.generation += 1  # before the connection shows: a new one is not caught up yet
            self._connection = connection
            self._on_reconnect()


class SQLStore:
    """The embedded default's stand-in for Redis: one table, short transactions of its own."""

    name = "sql"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._next_sweep = 0.0

    def ping(self) -> None:
        with self.engine.connect().execution_options(**{SQLITE_BEGIN: "DEFERRED"}) as conn:
            conn.execute(select(1))

    def get(self, key: str) -> str | None:
        query = select(StoreEntry.value).where(
            StoreEntry.key == key, StoreEntry.expires_at > utcnow()
        )
        with self.engine.connect().execution_options(**{SQLITE_BEGIN: "DEFERRED"}) as conn:
            return conn.execute(query).scalar_one_or_none()

    def get_many(self, keys: list[str]) -> list[str | None]:
        query = select(StoreEntry.key, StoreEntry.value).where(
            StoreEntry.key.in_(keys), StoreEntry.expires_at > utcnow()
        )
        with self.engine.connect().execution_options(**{SQLITE_BEGIN: "DEFERRED"}) as conn:
            found = {row.key: row.value for row in conn.execute(query)}
        return [found.get(key) for key in keys]

    def put(self, key: str, value: str, ttl_seconds: int) -> None:
        expires = utcnow() + timedelta(seconds=ttl_seconds)
        stmt = self._insert(StoreEntry).values(key=key, value=value, expires_at=expires)
        stmt = stmt.on_conflict_do_update(
            index_elements=[StoreEntry.key], set_={"value": value, "expires_at": expires}
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def incr(self, key: str, ttl_seconds: int, amount: int = 1) -> int:
        now = utcnow()
        expires = now + timedelta(seconds=ttl_seconds)
        stmt = self._insert(StoreEntry).values(key=key, value=str(amount), expires_at=expires)
        excluded = stmt.excluded
        live = StoreEntry.expires_at > now
        # Values are text (the interface is Redis-like); the counter is cast and cast back.
        upsert = stmt.on_conflict_do_update(
            index_elements=[StoreEntry.key],
            set_={
                "value": cast(
                    case((live, cast(StoreEntry.value, Integer) + amount), else_=amount), Text
                ),
                "expires_at": case((live, StoreEntry.expires_at), else_=excluded.expires_at),
            },
        ).returning(StoreEntry.value)
        with self.engine.begin() as conn:
            total = int(conn.execute(upsert).scalar_one())
        self._sweep()
        return total

    def delete(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(StoreEntry).where(StoreEntry.key == key))

    def scan(self, prefix: str) -> dict[str, str]:
        query = select(StoreEntry.key, StoreEntry.value).where(
            StoreEntry.key.startswith(prefix, autoescape=True), StoreEntry.expires_at > utcnow()
        )
        with self.engine.connect().execution_options(**{SQLITE_BEGIN: "DEFERRED"}) as conn:
            return {row.key: row.value for row in conn.execute(query)}

    def publish(self, channel: str, message: str) -> None:
        """Nothing to do: nobody subscribes to this store (its users ask the database)."""

    def put_and_publish(
        self, entries: dict[str, tuple[str, int]], channel: str, messages: list[str]
    ) -> None:
        for key, (value, ttl) in entries.items():
            self.put(key, value, ttl)

    def listen(
        self, channel: str, on_message: Callable[[str], None], on_reconnect: Callable[[], None]
    ) -> bool:
        return False

    def subscribe(self, channel: str, on_reconnect: Callable[[], None]) -> None:
        return None

    def close(self) -> None:
        """Nothing to release: the engine belongs to the app."""

    def _sweep(self) -> None:
        """Now and then, remove expired entries (rate-limit windows leave one per second)."""
        if time.monotonic() < self._next_sweep:
            return
        self._next_sweep = time.monotonic() + SWEEP_SECONDS
        with self.engine.begin() as conn:
            conn.execute(delete(StoreEntry).where(StoreEntry.expires_at <= utcnow()))

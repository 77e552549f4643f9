"""The neutral-screen lockout: after a denial, the same session or account is denied again.

Every process keeps the window's lockouts in memory, keyed by keyed hashes only, so a check
costs a dictionary lookup rather than a network round trip. The database's record of denials
is the truth: each process loads the window from it on first use and polls it for new
denials every second (a denial's record arrives with the recorder's next batch). A denial is
also published through the store (Redis) the moment it is decided, so other processes and
machines see it within milliseconds: each check first drains the messages that have arrived
(no thread is woken per message). If a message is lost, or Redis is flushed, restarted or
down, the poll still brings the denial within about a second.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from datetime import datetime, timedelta

from sqlalchemy import Engine, Select, select

from agegate.age_checks import recorder
from agegate.age_checks.models import DENIED, AgeCheck
from agegate.db import SQLITE_BEGIN
from agegate.store import Inbox, Store

CHANNEL = "lockouts"
POLL_SECONDS = 1.0
# Denials are committed with the recorder's batches, up to its MAX_DELAY after their
# checked_at (and later if the database was away): each poll re-reads this much.
POLL_OVERLAP = timedelta(seconds=5 * recorder.MAX_DELAY)
PRUNE_SECONDS = 60.0
log = logging.getLogger(__name__)


def denials_since(since: datetime) -> Select[str | None, str | None, datetime]:
    """What the poll reads: the denials checked after since (the partial index's rows)."""
    return select(AgeCheck.session_hash, AgeCheck.account_id, AgeCheck.checked_at).where(
        DENIED, AgeCheck.checked_at > since
    )


class KeyedHash:
    """HMAC-SHA256 of `kind:value` identifiers: stable for lookups, useless without the secret.

    The keyed state of each kind is made once and copied per value: a one-shot hmac.digest
    looks the digest up in OpenSSL by name on every call, which on a worker's cold caches
    costs more than the hashing.
    """

    def __init__(self, secret: bytes, kinds: tuple[str, ...]) -> None:
        self._keyed = {kind: hmac.new(secret, f"{kind}:".encode(), "sha256") for kind in kinds}

    def __call__(self, kind: str, value: str) -> str:
        mac = self._keyed[kind].copy()
        mac.update(value.encode())
        return mac.hexdigest()


class Lockouts:
    def __init__(self, engine: Engine, store: Store, secret: bytes, window_seconds: int) -> None:
        self._engine = engine.execution_options(**{SQLITE_BEGIN: "DEFERRED"})
        self._store = store
        self._hash = KeyedHash(secret, ("session", "account"))
        self.window = timedelta(seconds=window_seconds)
        self._until: dict[str, float] = {}  # lockout key → expiry (epoch seconds)
        self._lock = threading.Lock()
        self._polled_to: datetime | None = None  # denials up to here are loaded
        self._next_poll = 0.0
        self._next_prune = 0.0
        self._inbox: Inbox | None = None
        self._subscribed = False

    def session_hash(self, session_id: str) -> str:
        return self._hash("session", session_id)

    def _keys(self, session_hash: str | None, account_id: str | None) -> list[str]:
        keys = [f"s:{session_hash}"] if session_hash else []
        if account_id:
            keys.append(f"a:{self._hash('account', account_id)}")
        return keys

    def is_locked(self, session_hash: str | None, account_id: str | None, now: datetime) -> bool:
        """Whether a denial for this session or account happened within the window."""
        keys = self._keys(session_hash, account_id)
        if not keys:
            return False
        self._refresh(now)
        if self._inbox is not None:
            self._take(self._inbox.drain())
        instant = now.timestamp()
        return any(self._until.get(key, 0.0) > instant for key in keys)

    def record_denial(self, session_hash: str | None, account_id: str | None, at: datetime) -> None:
        """Called when a check is denied: lock here at once and tell the other processes."""
        until = (at + self.window).timestamp()
        keys = self._keys(session_hash, account_id)
        self._add([(key, until) for key in keys])
        try:
            for key in keys:
                self._store.publish(CHANNEL, f"{key} {until}")
        except Exception as exc:  # the others' database poll brings it within a second
            log.warning("lockouts: could not publish a denial (%s)", type(exc).__name__)

    def _add(self, lockouts: list[tuple[str, float]]) -> None:
        with self._lock:
            self._merge(lockouts)

    def _merge(self, lockouts: list[tuple[str, float]]) -> None:
        for key, until in lockouts:
            self._until[key] = max(until, self._until.get(key, 0.0))

    def _take(self, messages: list[str]) -> None:
        lockouts = []
        for message in messages:
            key, _, until = message.partition(" ")
            try:
                lockouts.append((key, float(until)))
            except ValueError:  # not ours (another version?): the poll is the truth anyway
                log.warning("lockouts: ignored a malformed message")
        if lockouts:
            self._add(lockouts)

    def _on_reconnect(self) -> None:
        self._next_poll = 0.0  # messages may have been missed: read the database again soon

    def _refresh(self, now: datetime) -> None:
        if time.monotonic() < self._next_poll:
            return
        with self._lock:
            if time.monotonic() < self._next_poll:
                return
            self._next_poll = time.monotonic() + POLL_SECONDS
            if not self._subscribed:
                self._inbox = self._store.subscribe(CHANNEL, self._on_reconnect)
                self._subscribed = True
            polled_to = self._polled_to
            since = now - self.window if polled_to is None else polled_to - POLL_OVERLAP
            try:
                loaded = self._load_since(since, whole_window=polled_to is None)
            except Exception as exc:  # keep what is known; the next poll tries again
                log.warning("lockouts: database poll failed (%s)", type(exc).__name__)
                return
            self._polled_to = max(now, self._polled_to or now)
            instant = now.timestamp()
            if instant >= self._next_prune:
                # Expired lockouts already fail the lookup; dropping them is only for memory,
                # and costs a pass over the whole window, so it is not done on every poll.
                self._until = {k: v for k, v in self._until.items() if v > instant}
                self._next_prune = instant + PRUNE_SECONDS
            self._merge(loaded)

    def _load_since(self, since: datetime, *, whole_window: bool) -> list[tuple[str, float]]:
        query = denials_since(since)
        if whole_window:  # it may be large: stream it (a server-side cursor on PostgreSQL)
            query = query.execution_options(yield_per=5000)
        window = self.window.total_seconds()
        loaded = []
        with self._engine.connect() as conn:
            for session_hash, account_id, checked_at in conn.execute(query):
                until = checked_at.timestamp() + window
                loaded += [(key, until) for key in self._keys(session_hash, account_id)]
        return loaded

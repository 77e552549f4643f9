"""The neutral-screen lockout: after a denial, the same session or account is denied again.

The promise: once a denial's answer has gone, every later check for that session or account,
in any process (one started a moment later included), is denied until the window ends, as
long as the database or the store (Redis) is up. How it is kept:

- A denial is answered only after its record is committed and, in one round trip, its
  lockout is kept in the store for the window and its message is out: the store has queued
  it to every subscribed process before the answer leaves (views.py). While the database
  refuses the record, the store's copy holds the lockout alone.
- A process knows the lockouts completely once its subscription is confirmed and, after
  that, the whole window has been loaded from the database and the store: whatever was
  denied before the subscription is in what it loaded, whatever after arrives as a message.
  Each check first drains the messages that have arrived (no thread is woken per message),
  then asks its memory, keyed by keyed hashes only.
- Until then (a process starting up, a subscription lost, or a store that cannot push: the
  embedded default, or PostgreSQL without Redis), each check asks the database itself, and
  the store, for that session's and account's denials. A database that cannot answer then
  makes the check a 503, never an allow.

A poll of the database every second is the backstop for a message lost on its way out.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from datetime import datetime, timedelta

from sqlalchemy import Engine, Select, func, or_, select

from agegate.age_checks.models import DENIED, AgeCheck
from agegate.db import SQLITE_BEGIN, utcnow
from agegate.store import Inbox, Store

CHANNEL = "lockouts"
STORE_PREFIX = "lockout:"  # each denial's lockout, kept in the store for the window
POLL_SECONDS = 1.0
# Each poll reads back this far before the last one: a denial is committed moments after its
# check (before its answer), so a poll finds what the one before it could not yet see.
POLL_OVERLAP = timedelta(seconds=1)
PRUNE_SECONDS = 60.0
RELOAD_RETRY_SECONDS = 1.0
log = logging.getLogger(__name__)


def denials_since(since: datetime) -> Select[str | None, str | None, datetime]:
    """What the poll reads: the denials checked after since (the partial index's rows)."""
    return select(AgeCheck.session_hash, AgeCheck.account_id, AgeCheck.checked_at).where(
        DENIED, AgeCheck.checked_at > since
    )


def last_denial(
    session_hash: str | None, account_id: str | None, since: datetime
) -> Select[datetime | None]:
    """When this signup session or account was last denied after since (each has a partial index)."""
    who = []
    if session_hash:
        who.append(AgeCheck.session_hash == session_hash)
    if account_id:
        who.append(AgeCheck.account_id == account_id)
    return select(func.max(AgeCheck.checked_at)).where(
        DENIED, AgeCheck.checked_at > since, or_(*who)
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
        self._loaded_generation = 0  # the subscription whose window has been loaded
        # Subscribing at once: the subscription and the window load run in the store's
        # thread while the process starts, and until both are done checks ask the database.
        self._made = threading.Event()
        self._inbox: Inbox | None = store.subscribe(CHANNEL, self._on_subscribed)
        self._made.set()

    def session_hash(self, session_id: str) -> str:
        return self._hash("session", session_id)

    def _keys(self, session_hash: str | None, account_id: str | None) -> list[str]:
        keys = [f"s:{session_hash}"] if session_hash else []
        if account_id:
            keys.append(f"a:{self._hash('account', account_id)}")
        return keys

    @property
    def complete(self) -> bool:
        """Whether memory and messages alone know every lockout (else checks ask the database)."""
        inbox = self._inbox
        return inbox is not None and inbox.connected and self._loaded_generation == inbox.generation

    def is_locked(self, session_hash: str | None, account_id: str | None, now: datetime) -> bool:
        """Whether a denial for this signup session or account happened within the window."""
        keys = self._keys(session_hash, account_id)
        if not keys:
            return False
        if self._inbox is not None:
            self._take(self._inbox.drain())
        if self.complete:
            self._poll(now)
            return self._held(keys, now)
        return self._held(keys, now) or self._look_up(session_hash, account_id, keys, now)

    def record_denial(
        self, session_hash: str | None, account_id: str | None, at: datetime, *, written: bool
    ) -> None:
        """Called before a denial is answered: lock here, keep the lockout in the store for the
        window, and tell the other processes. When its record was `written`, the store only
        backs the database up, and a store that fails is logged; when it was not, the store
        is all that keeps the lockout, and its failure is raised (the check becomes a 503)."""
        until = at + self.window
        keys = self._keys(session_hash, account_id)
        self._add([(key, until.timestamp()) for key in keys])
        ttl = max(1, int((until - utcnow()).total_seconds()) + 1)
        held = {STORE_PREFIX + key: (str(until.timestamp()), ttl) for key in keys}
        messages = [f"{key} {until.timestamp()}" for key in keys]
        try:
            self._store.put_and_publish(held, CHANNEL, messages)
        except Exception as exc:
            if not written:
                raise
            # The record is committed: processes that ask the database find it, and the
            # others' poll brings it within a second.
            log.warning("lockouts: could not publish a denial (%s)", type(exc).__name__)

    def _held(self, keys: list[str], now: datetime) -> bool:
        instant = now.timestamp()
        return any(self._until.get(key, 0.0) > instant for key in keys)

    def _look_up(
        self, session_hash: str | None, account_id: str | None, keys: list[str], now: datetime
    ) -> bool:
        """Ask the database (which must answer) and the store (if it can) about these keys."""
        with self._engine.connect() as conn:
            last = conn.execute(last_denial(session_hash, account_id, now - self.window)).scalar()
        # Both keys are locked when either was denied: this check is denied then, and its own
        # record binds the other key anyway.
        found = (
            []
            if last is None
            else [(key, last.timestamp() + self.window.total_seconds()) for key in keys]
        )
        try:
            held = self._store.get_many([STORE_PREFIX + key for key in keys])
        except Exception as exc:  # the database answered: it holds every written denial
            log.warning("lockouts: store lookup failed (%s)", type(exc).__name__)
            held = []
        found += [(key, float(until)) for key, until in zip(keys, held, strict=False) if until]
        if found:
            self._add(found)
        return self._held(keys, now)

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
            except ValueError:  # not ours (another version?): the database is the truth anyway
                log.warning("lockouts: ignored a malformed message")
        if lockouts:
            self._add(lockouts)

    def _on_subscribed(self) -> None:
        """In the store's thread, after each confirmed (re)subscription: load the whole window.

        Messages may have been missed before the subscription; everything denied before it is
        in the database or the store, so once this load is done the process knows it all.
        """
        self._made.wait()  # the first subscription can be confirmed before __init__ returns
        inbox = self._inbox
        while inbox is not None and inbox.connected:
            generation = inbox.generation
            started = utcnow()
            try:
                loaded = self._load_since(started - self.window, whole_window=True)
                loaded += self._load_held()
            except Exception as exc:  # checks ask the database meanwhile; try again
                log.warning("lockouts: could not load the window (%s)", type(exc).__name__)
                time.sleep(RELOAD_RETRY_SECONDS)
                continue
            with self._lock:
                self._merge(loaded)
                self._polled_to = started
                self._next_poll = time.monotonic() + POLL_SECONDS
                self._loaded_generation = generation
            return

    def _poll(self, now: datetime) -> None:
        """The backstop for a lost message: the denials committed since the last poll."""
        if time.monotonic() < self._next_poll:
            return
        with self._lock:
            if time.monotonic() < self._next_poll:
                return
            self._next_poll = time.monotonic() + POLL_SECONDS
            since = (self._polled_to or now - self.window) - POLL_OVERLAP
            try:
                loaded = self._load_since(since, whole_window=False)
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

    def _load_held(self) -> list[tuple[str, float]]:
        held = self._store.scan(STORE_PREFIX)
        return [(key.removeprefix(STORE_PREFIX), float(until)) for key, until in held.items()]

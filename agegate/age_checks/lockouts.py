"""The neutral-screen lockout: after a denial, the same session or account is denied again.

Lockouts live in the store (Redis) for speed, keyed by keyed hashes only. The database's record
of recent denials is the truth: when the store has been flushed or restarted (its sentinel
key is gone) or cannot be reached, the check asks the database instead, and the first process
to notice copies the recent denials back into the store.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import datetime, timedelta

from sqlalchemy import Engine, or_, select

from agegate.age_checks.models import AgeCheck, Outcome
from agegate.db import SQLITE_BEGIN
from agegate.store import Store

SENTINEL_KEY = "lockouts:warm"
REWARM_LOCK_KEY = "lockouts:rewarm"
log = logging.getLogger(__name__)


def keyed_hash(secret: bytes, kind: str, value: str) -> str:
    """HMAC-SHA256 of an identifier: stable for lookups, useless without the secret."""
    return hmac.new(secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


class Lockouts:
    def __init__(self, engine: Engine, store: Store, secret: bytes, window_seconds: int) -> None:
        self._engine = engine.execution_options(**{SQLITE_BEGIN: "DEFERRED"})
        self._store = store
        self._secret = secret
        self.window = timedelta(seconds=window_seconds)
        # Set after a store error: this process saw a lockout write fail, so the store may
        # lack one; it makes every process re-copy from the database before trusting it.
        self._distrust = False

    def session_hash(self, session_id: str) -> str:
        return keyed_hash(self._secret, "session", session_id)

    def _keys(self, session_hash: str | None, account_id: str | None) -> list[str]:
        keys = [f"lockout:s:{session_hash}"] if session_hash else []
        if account_id:
            keys.append(f"lockout:a:{keyed_hash(self._secret, 'account', account_id)}")
        return keys

    def is_locked(self, session_hash: str | None, account_id: str | None, now: datetime) -> bool:
        """Whether a denial for this session or account happened within the window."""
        keys = self._keys(session_hash, account_id)
        if not keys:
            return False
        try:
            if self._distrust:
                self._store.delete(SENTINEL_KEY)
                self._distrust = False
            if any(self._store.get(key) is not None for key in keys):
                return True
            if self._store.get(SENTINEL_KEY) is not None:
                return False
        except Exception as exc:
            log.warning("lockouts: store unavailable, asking the database (%s)", type(exc).__name__)
            self._distrust = True
            return self._denied_recently(session_hash, account_id, now)
        locked = self._denied_recently(session_hash, account_id, now)
        self._rewarm(now)
        return locked

    def record_denial(self, session_hash: str | None, account_id: str | None) -> None:
        """Called after the denial is committed to the database."""
        try:
            for key in self._keys(session_hash, account_id):
                self._store.put(key, "1", int(self.window.total_seconds()))
        except Exception as exc:
            log.warning("lockouts: could not write to the store (%s)", type(exc).__name__)
            self._distrust = True

    def _denied_recently(
        self, session_hash: str | None, account_id: str | None, now: datetime
    ) -> bool:
        who = []
        if session_hash:
            who.append(AgeCheck.session_hash == session_hash)
        if account_id:
            who.append(AgeCheck.account_id == account_id)
        query = (
            select(AgeCheck.id)
            .where(
                or_(*who),
                AgeCheck.outcome == Outcome.DENIED,
                AgeCheck.checked_at > now - self.window,
            )
            .limit(1)
        )
        with self._engine.connect() as conn:
            return conn.execute(query).first() is not None

    def _rewarm(self, now: datetime) -> None:
        """Copy the window's denials into the store, then mark it warm (one process at a time)."""
        try:
            if self._store.incr(REWARM_LOCK_KEY, ttl_seconds=60) != 1:
                return
            query = select(AgeCheck.session_hash, AgeCheck.account_id, AgeCheck.checked_at).where(
                AgeCheck.outcome == Outcome.DENIED, AgeCheck.checked_at > now - self.window
            )
            copied = 0
            with self._engine.connect() as conn:
                for row in conn.execute(query.execution_options(yield_per=1000)):
                    remaining = int((row.checked_at + self.window - now).total_seconds())
                    for key in self._keys(row.session_hash, row.account_id):
                        self._store.put(key, "1", max(remaining, 1))
                    copied += 1
            self._store.put(SENTINEL_KEY, now.isoformat(), 10 * 365 * 86400)
            self._store.delete(REWARM_LOCK_KEY)
            log.info("lockouts: store re-warmed with %d recent denials", copied)
        except Exception as exc:
            log.warning(
                "lockouts: re-warm failed (%s); the database answers meanwhile", type(exc).__name__
            )

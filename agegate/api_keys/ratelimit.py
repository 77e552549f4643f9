"""Requests per second per API key, counted across every process in the store (Redis).

Each process counts its own requests at once and adds them to the shared counter of the
current second at most every `SYNC_SECONDS`, so most requests cost no round trip. A process
refuses as soon as the shared total it last saw plus its own unsent requests passes the limit;
several processes together can overshoot by what they accept within one sync interval.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from agegate.store import Store

SYNC_SECONDS = 0.05
MAX_WINDOWS = 10_000  # past this many names, the windows of past seconds are dropped
log = logging.getLogger(__name__)


@dataclass
class _Window:
    second: int
    shared: int = 0  # the store's total for this second, as of the last sync
    unsent: int = 0  # this process's requests not yet added to it
    synced_at: float = 0.0


class RateLimiter:
    def __init__(self, store: Store, per_second: int) -> None:
        self._store = store
        self.per_second = per_second
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def allow(self, key_name: str) -> bool:
        """Count one request for key_name; False when the key is over its limit this second."""
        second, now = int(time.time()), time.monotonic()
        with self._lock:
            window = self._windows.get(key_name)
            if window is None or window.second != second:
                if len(self._windows) >= MAX_WINDOWS:  # names may be client addresses
                    self._windows = {k: w for k, w in self._windows.items() if w.second == second}
                window = self._windows[key_name] = _Window(second)
            window.unsent += 1
            send = window.unsent if now - window.synced_at >= SYNC_SECONDS else 0
            if send:
                window.unsent -= send
                window.synced_at = now
        if send:
            try:
                total = self._store.incr(f"rate:{key_name}:{second}", ttl_seconds=2, amount=send)
                with self._lock:
                    window.shared = max(window.shared, total)
            except Exception as exc:  # a limiter that is down must not take the service down
                log.warning(
                    "rate limit: store unavailable (%s); counting locally", type(exc).__name__
                )
                with self._lock:
                    window.shared += send
        return window.shared + window.unsent <= self.per_second

    def exhausted(self, key_name: str) -> bool:
        """Whether key_name has used its whole limit this second, as this process last saw
        it (one more would be refused): nothing is counted and the store is not asked."""
        window = self._windows.get(key_name)
        return (
            window is not None
            and window.second == int(time.time())
            and window.shared + window.unsent >= self.per_second
        )

"""Requests per second per key, counted locally and shared through the store."""

from __future__ import annotations

import time

from flask import Flask

from agegate.api_keys.ratelimit import RateLimiter
from agegate.store import SQLStore


def _wait_for_a_fresh_second() -> None:
    time.sleep(1 - (time.time() % 1) + 0.01)


def test_a_key_over_its_limit_is_refused_until_the_next_second(app: Flask) -> None:
    limiter = RateLimiter(SQLStore(app.extensions["agegate.engine"]), per_second=5)
    _wait_for_a_fresh_second()
    answers = [limiter.allow("k") for _ in range(8)]
    assert answers == [True] * 5 + [False] * 3
    assert limiter.allow("other-key")  # keys are counted apart
    _wait_for_a_fresh_second()
    assert limiter.allow("k")


def test_processes_share_one_count(app: Flask) -> None:
    store = SQLStore(app.extensions["agegate.engine"])
    first, second = RateLimiter(store, per_second=6), RateLimiter(store, per_second=6)
    _wait_for_a_fresh_second()
    assert all(first.allow("k") for _ in range(4))
    time.sleep(0.06)  # past the sync interval: the first process has told the store
    assert first.allow("k")  # 5th, sent with this sync
    answers = [second.allow("k") for _ in range(3)]
    # The second process sees the first one's 5 and allows just one more.
    assert answers == [True, False, False]

"""Every key-value store implementation passes the same contract."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from flask import Flask

from agegate.extensions import store as store_holder
from agegate.store import RedisStore, SQLStore, Store


def _kinds() -> list[str]:
    import os

    return ["sql", "redis"] if os.environ.get("AGEGATE_TEST_REDIS_URL") else ["sql"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kind" in metafunc.fixturenames:
        metafunc.parametrize("kind", _kinds())


@pytest.fixture
def store(kind: str, app: Flask, redis_url: str | None) -> Iterator[Store]:
    with app.app_context():
        if kind == "redis":
            assert redis_url is not None
            yield RedisStore(redis_url, pool_size=4)
        else:
            yield SQLStore(app.extensions["agegate.engine"])


def test_put_then_get(store: Store) -> None:
    assert store.get("k1") is None
    store.put("k1", "v1", ttl_seconds=60)
    assert store.get("k1") == "v1"
    store.put("k1", "v2", ttl_seconds=60)
    assert store.get("k1") == "v2"


def test_values_expire(store: Store) -> None:
    store.put("short", "v", ttl_seconds=1)
    assert store.get("short") == "v"
    time.sleep(1.2)
    assert store.get("short") is None


def test_incr_counts_within_its_window_then_restarts(store: Store) -> None:
    assert [store.incr("c", ttl_seconds=1) for _ in range(3)] == [1, 2, 3]
    time.sleep(1.2)
    assert store.incr("c", ttl_seconds=1) == 1


def test_delete_and_independent_keys(store: Store) -> None:
    store.put("a", "1", ttl_seconds=60)
    store.put("b", "2", ttl_seconds=60)
    store.delete("a")
    store.delete("never-set")
    assert store.get("a") is None
    assert store.get("b") == "2"


def test_ping(store: Store) -> None:
    store.ping()


def test_app_uses_redis_when_configured(app: Flask, redis_url: str | None) -> None:
    with app.app_context():
        assert store_holder.current.name == ("redis" if redis_url else "sql")

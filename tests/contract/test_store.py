"""Every key-value store implementation passes the same contract."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from flask import Flask

from agegate.extensions import store as store_holder
from agegate.store import PUBLISHER, SUBSCRIBER, RedisInbox, RedisStore, SQLStore, Store


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


def test_get_many_answers_in_key_order(store: Store) -> None:
    store.put("m1", "one", ttl_seconds=60)
    store.put("m3", "three", ttl_seconds=60)
    store.put("gone", "x", ttl_seconds=1)
    time.sleep(1.2)
    assert store.get_many(["m3", "m2", "m1", "gone"]) == ["three", None, "one", None]


def test_values_expire(store: Store) -> None:
    store.put("short", "v", ttl_seconds=1)
    assert store.get("short") == "v"
    time.sleep(1.2)
    assert store.get("short") is None


def test_incr_counts_within_its_window_then_restarts(store: Store) -> None:
    assert [store.incr("c", ttl_seconds=1) for _ in range(3)] == [1, 2, 3]
    time.sleep(1.2)
    assert store.incr("c", ttl_seconds=1) == 1


def test_incr_by_an_amount(store: Store) -> None:
    assert store.incr("n", ttl_seconds=5, amount=5) == 5
    assert store.incr("n", ttl_seconds=5, amount=3) == 8
    assert store.incr("n", ttl_seconds=5) == 9


def test_published_messages_reach_listeners_or_the_store_says_it_cannot_push(
    store: Store, kind: str
) -> None:
    import threading

    received: list[str] = []
    subscribed = threading.Event()
    pushes = store.listen("test-channel", received.append, subscribed.set)
    assert pushes == (kind == "redis")
    if not pushes:
        store.publish("test-channel", "ignored")  # harmless where nobody can listen
        return
    assert subscribed.wait(5)
    store.publish("test-channel", "hello")
    deadline = time.monotonic() + 5
    while not received and time.monotonic() < deadline:
        time.sleep(0.01)
    assert received == ["hello"]

    # Redis drops the publishing connection (an idle timeout, a restart): the next publish
    # notices, sends again on a new connection, and is not lost.
    assert isinstance(store, RedisStore) and store._publisher is not None
    host, port = store._publisher._sock.getsockname()[:2]  # type: ignore[attr-defined]
    names = {client["addr"]: client["name"] for client in store.client.client_list()}
    assert names[f"{host}:{port}"] == PUBLISHER
    assert store.client.client_kill_filter(addr=f"{host}:{port}") == 1
    store.publish("test-channel", "again")
    deadline = time.monotonic() + 5
    while len(received) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert received == ["hello", "again"]


def test_subscribed_messages_wait_to_be_drained_or_the_store_says_it_cannot_push(
    store: Store, kind: str
) -> None:
    import threading

    subscribed = threading.Event()
    inbox = store.subscribe("test-inbox", subscribed.set)
    assert (inbox is not None) == (kind == "redis")
    if inbox is None:
        return
    assert subscribed.wait(5)
    assert inbox.connected and inbox.generation == 1
    assert inbox.drain() == []  # nothing yet, and it does not wait for anything

    def drained(count: int) -> list[str]:
        got: list[str] = []
        deadline = time.monotonic() + 5
        while len(got) < count and time.monotonic() < deadline:
            got += inbox.drain()
            time.sleep(0.01)
        return got

    for message in ("one", "two", "three"):
        store.publish("test-inbox", message)
    assert drained(3) == ["one", "two", "three"]

    # Redis drops the subscription: the next drain notices, a thread subscribes again and
    # says so (the owner catches up from the database), and messages flow again.
    assert isinstance(store, RedisStore) and isinstance(inbox, RedisInbox)
    assert inbox._connection is not None
    host, port = inbox._connection._sock.getsockname()[:2]  # type: ignore[attr-defined]
    names = {client["addr"]: client["name"] for client in store.client.client_list()}
    assert names[f"{host}:{port}"] == SUBSCRIBER
    subscribed.clear()
    assert store.client.client_kill_filter(addr=f"{host}:{port}") == 1
    deadline = time.monotonic() + 5
    while not subscribed.is_set() and time.monotonic() < deadline:
        assert inbox.drain() == []
        time.sleep(0.01)
    assert subscribed.is_set()
    assert inbox.connected and inbox.generation == 2  # its owner knows it may have missed some
    store.publish("test-inbox", "four")
    assert drained(1) == ["four"]

    store.close()  # returns once the subscribing thread has ended
    assert not inbox._thread.is_alive(), "the subscribing thread outlived its store"
    assert inbox.drain() == []


def test_put_and_publish_keeps_every_entry_and_tells_every_subscriber(
    store: Store, kind: str
) -> None:
    import threading

    subscribed = threading.Event()
    inbox = store.subscribe("test-both", subscribed.set)
    assert (inbox is not None) == (kind == "redis")
    if inbox is not None:
        assert subscribed.wait(5)
    store.put_and_publish({"both:1": ("one", 60), "both:2": ("two", 1)}, "test-both", ["m1", "m2"])
    assert store.get_many(["both:1", "both:2"]) == ["one", "two"]
    if inbox is not None:
        got: list[str] = []
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            got += inbox.drain()
            time.sleep(0.01)
        assert got == ["m1", "m2"]
    time.sleep(1.2)
    assert store.get_many(["both:1", "both:2"]) == ["one", None]  # each entry its own expiry


def test_scan_finds_the_live_keys_of_a_prefix_only(store: Store) -> None:
    store.put("lockout:s:1", "10.5", ttl_seconds=60)
    store.put("lockout:a:2", "11.5", ttl_seconds=60)
    store.put("lockout:gone", "1", ttl_seconds=1)
    store.put("lockouts-are-not-this", "x", ttl_seconds=60)
    store.put("other:lockout:s:3", "x", ttl_seconds=60)
    store.put("lockout_not_a_prefix", "x", ttl_seconds=60)  # `_` is no wildcard here
    time.sleep(1.2)
    assert store.scan("lockout:") == {"lockout:s:1": "10.5", "lockout:a:2": "11.5"}
    assert store.scan("nothing:") == {}


def test_delete_and_independent_keys(store: Store) -> None:
    store.put("a", "1", ttl_seconds=60)
    store.put("b", "2", ttl_seconds=60)
    store.delete("a")
    store.delete("never-set")
    assert store.get("a") is None
    assert store.get("b") == "2"


def test_ping(store: Store) -> None:
    store.ping()


# Redis only: like the redis kind above, absent (never skipped) without a Redis to test.
if "redis" in _kinds():

    def test_redis_messages_stay_within_their_database(redis_url: str) -> None:
        """Channels are server-wide in Redis; two deployments on two databases of one server must
        not hear each other (a lockout or a wake-up meant for the other)."""
        import threading

        ours = RedisStore(redis_url, pool_size=2)
        db = int(ours.client.connection_pool.connection_kwargs.get("db", 0))
        theirs = RedisStore(redis_url.rsplit("/", 1)[0] + f"/{db - 1 if db else 1}", pool_size=2)
        heard: dict[str, list[str]] = {"ours": [], "theirs": []}
        drained: dict[str, list[str]] = {"ours": [], "theirs": []}
        ready = {name: threading.Event() for name in heard}
        subscribed = {name: threading.Event() for name in heard}
        inboxes = {}
        for name, store in (("ours", ours), ("theirs", theirs)):
            store.listen("test-isolation", heard[name].append, ready[name].set)
            inboxes[name] = store.subscribe("test-isolation", subscribed[name].set)
            assert ready[name].wait(5) and subscribed[name].wait(5)
        try:
            ours.publish("test-isolation", "for ours")
            theirs.publish("test-isolation", "for theirs")
            deadline = time.monotonic() + 5
            while not all(heard.values()) or not all(drained.values()):
                assert time.monotonic() < deadline
                for name, inbox in inboxes.items():
                    drained[name] += inbox.drain()  # type: ignore[union-attr]
                time.sleep(0.01)
            time.sleep(0.2)  # anything that crossed over would have arrived with the rest
            for name, inbox in inboxes.items():
                drained[name] += inbox.drain()  # type: ignore[union-attr]
            assert heard == drained == {"ours": ["for ours"], "theirs": ["for theirs"]}
        finally:
            ours.close()
            theirs.close()


def test_app_uses_redis_when_configured(app: Flask, redis_url: str | None) -> None:
    with app.app_context():
        assert store_holder.current.name == ("redis" if redis_url else "sql")

"""Kind `redis` scans the keyspace once per step: the pass that counts an account's keys is
the one its batches UNLINK from, among a million keys of other accounts and other data."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agegate.remediation.targets.base import PurgeContext
from agegate.remediation.targets.config import Targets
from agegate.remediation.targets.redis import SCAN_COUNT, RedisTarget
from tests.support.servers import PrivateRedis

KEYSPACE = 1_000_000
ACCOUNT_KEYS = 50
NEIGHBOURS = ("acct-10", "acct-1-0", "acct-1_")
PATTERN = "gen:history:{account_id}:*"


@pytest.fixture(scope="module")
def keyspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    """A private Redis holding a million keys: the account's, look-alike neighbours', and
    the rest of the platform's."""
    directory = tmp_path_factory.mktemp("redis")
    server = PrivateRedis(directory)
    server.start()
    client = server.client()
    try:
        pipe = client.pipeline(transaction=False)
        for account in ("acct-1", *NEIGHBOURS):
            pipe.mset({f"gen:history:{account}:{i}": b"v" for i in range(ACCOUNT_KEYS)})
        filler = KEYSPACE - ACCOUNT_KEYS * (1 + len(NEIGHBOURS))
        for start in range(0, filler, 10_000):
            pipe.mset({f"other:{i}": b"v" for i in range(start, min(start + 10_000, filler))})
            if start % 100_000 == 0:
                pipe.execute()
        pipe.execute()
        assert client.dbsize() == KEYSPACE
        yield server
    finally:
        client.close()
        server.stop()


def history(server: PrivateRedis, load: Callable[..., Targets]) -> RedisTarget:
    """The target under test: the account's history keys, ids without ':'."""
    entry = {
        "name": "history",
        "kind": "redis",
        "url": server.url,
        "patterns": [PATTERN],
        "account_id_pattern": "[A-Za-z0-9_-]+",
    }
    (target,) = load([entry], {}).targets
    assert isinstance(target, RedisTarget)
    return target


def scans_of_one_pass(server: PrivateRedis, match: str) -> int:
    """How many SCAN calls one raw pass over the keyspace takes, as the target runs it."""
    client = server.client()
    try:
        cursor, calls = 0, 0
        while True:
            cursor, _ = client.scan(cursor, match=match, count=SCAN_COUNT)
            calls += 1
            if cursor == 0:
                return calls
    finally:
        client.close()


def test_one_scan_pass_counts_and_purges_an_account(
    keyspace: PrivateRedis, load: Callable[..., Targets]
) -> None:
    target = history(keyspace, load)
    one_pass = scans_of_one_pass(keyspace, "gen:history:acct-1:*")
    assert one_pass >= KEYSPACE // SCAN_COUNT  # the pass walks the whole keyspace

    commands: list[str] = []
    send = target.client.execute_command

    def counting(*args: Any, **options: Any) -> Any:
        commands.append(str(args[0]).upper())
        return send(*args, **options)

    target.client.execute_command = counting  # type: ignore[method-assign]
    found = target.count("acct-1")
    batches = []
    while removed := target.purge_batch("acct-1", 10, PurgeContext("case-1")):
        batches.append(removed)

    assert found == ACCOUNT_KEYS and sum(batches) == ACCOUNT_KEYS
    assert commands.count("SCAN") == one_pass  # once, not once per batch or per count
    assert commands.count("UNLINK") == ACCOUNT_KEYS // 10
    client = keyspace.client()
    try:
        assert client.dbsize() == KEYSPACE - ACCOUNT_KEYS
        for neighbour in NEIGHBOURS:
            assert len(list(client.scan_iter(f"gen:history:{neighbour}:*", count=10_000))) == (
                ACCOUNT_KEYS
            )
    finally:
        client.close()


def test_a_batch_without_a_pass_to_continue_makes_one(
    keyspace: PrivateRedis, load: Callable[..., Targets]
) -> None:
    """A fresh worker resuming a step (no count first) scans once, then goes on from it;
    keys that expired since the pass are skipped, not taken for the end."""
    client = keyspace.client()
    try:
        client.mset({f"gen:history:acct-2:{i}": b"v" for i in range(30)})
        target = history(keyspace, load)
        assert target.purge_batch("acct-2", 10, PurgeContext("case-2")) == 10
        _, pending = target._passes["acct-2"]
        client.delete(*list(pending)[:10])  # the pass's next batch expires meanwhile
        client.mset({"gen:history:acct-2:late": b"v"})
        assert target.purge_batch("acct-2", 10, PurgeContext("case-2")) == 10  # the one after
        assert target.purge_batch("acct-2", 10, PurgeContext("case-2")) == 0
        assert target.count("acct-2") == 1  # the late key: the verify step's count finds it
        assert target.purge_batch("acct-2", 10, PurgeContext("case-2")) == 1
        assert target.purge_batch("acct-2", 10, PurgeContext("case-2")) == 0
    finally:
        client.close()

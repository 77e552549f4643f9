"""Benchmark: purge one account among many with the `sql`, `files` and `redis` targets,
against a raw batched DELETE (a raw unlink loop, a raw SCAN + UNLINK loop) of the same data
measured in the same run.

    .venv/bin/python -m tests.benchmarks.purge [--sizes 10000,100000,1000000] [--batch 500]
        [--files 10000] [--redis-keyspace 1000000] [--redis-account 10000]

Each N is N generations plus N child outputs for the account (2N rows), among other
accounts holding N/2 rows more. The redis case is the account's keys among a keyspace of
other keys, in a private redis-server the benchmark starts; the target counts, then purges
(as a step does). Every measurement runs in a fresh process, so its peak memory
(ru_maxrss) is its own. PostgreSQL from AGEGATE_BENCH_DATABASE_URL (a database is created
and dropped); prints items/s, the ratio to the raw rate and peak memory.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from tests.benchmarks.age_checks import scratch_database

ACCOUNT = "acct-target"
SCHEMA = """
DROP TABLE IF EXISTS generation_outputs; DROP TABLE IF EXISTS generations;
CREATE TABLE generations (id BIGSERIAL PRIMARY KEY, account_id TEXT NOT NULL, prompt TEXT NOT NULL);
CREATE INDEX ON generations (account_id);
CREATE TABLE generation_outputs (id BIGSERIAL PRIMARY KEY,
    generation_id BIGINT NOT NULL REFERENCES generations(id), uri TEXT NOT NULL);
CREATE INDEX ON generation_outputs (generation_id);
"""


def seed(url: str, n: int) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(SCHEMA)
        conn.execute(
            text(
                "INSERT INTO generations (account_id, prompt) SELECT CASE WHEN g <= :n THEN :acct "
                "ELSE 'acct-other-' || (g % 50) END, 'a prompt of ordinary length, number ' || g "
                "FROM generate_series(1, :total) AS g"
            ),
            {"n": n, "acct": ACCOUNT, "total": n + n // 4},
        )
        conn.execute(
            text(
                "INSERT INTO generation_outputs (generation_id, uri) SELECT id, 'outputs/' || id || '.mp4' "
                "FROM generations"
            )
        )
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()


def _purge_with_target(url: str, batch: int) -> tuple[int, float]:
    from agegate.remediation.targets.base import PurgeContext
    from agegate.remediation.targets.sql import SQLTarget

    target = SQLTarget.from_config(
        {
            "name": "bench",
            "kind": "sql",
            "url": url,
            "tables": [
                {"table": "generations", "account_column": "account_id"},
                {
                    "table": "generation_outputs",
                    "parent": {
                        "table": "generations",
                        "column": "generation_id",
                        "references": "id",
                    },
                },
            ],
        },
        "bench",
    )
    started, total = time.perf_counter(), 0
    while gone := target.purge_batch(ACCOUNT, batch, PurgeContext("bench")):
        total += gone
    elapsed = time.perf_counter() - started
    target.close()
    return total, elapsed


def _purge_raw(url: str, batch: int) -> tuple[int, float]:
    import psycopg

    started, total = time.perf_counter(), 0
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        for statement in (
            "DELETE FROM generation_outputs WHERE id IN (SELECT o.id FROM generation_outputs o JOIN generations g"
            " ON o.generation_id = g.id WHERE g.account_id = %s LIMIT %s)",
            "DELETE FROM generations WHERE id IN (SELECT id FROM generations WHERE account_id = %s LIMIT %s)",
        ):
            while (gone := conn.execute(statement, (ACCOUNT, batch)).rowcount) > 0:
                total += gone
    return total, time.perf_counter() - started


def _files_with_target(root: str, batch: int) -> tuple[int, float]:
    from agegate.remediation.targets.base import PurgeContext
    from agegate.remediation.targets.files import FilesTarget

    target = FilesTarget.from_config(
        {"name": "media", "kind": "files", "root": root, "paths": ["outputs/{account_id}/"]},
        "bench",
    )
    started, total = time.perf_counter(), 0
    while gone := target.purge_batch(ACCOUNT, batch, PurgeContext("bench")):
        total += gone
    return total, time.perf_counter() - started


def _files_raw(root: str, batch: int) -> tuple[int, float]:
    started = time.perf_counter()
    directory = Path(root) / "outputs" / ACCOUNT
    total = 0
    for entry in os.scandir(directory):
        os.unlink(entry.path)
        total += 1
    directory.rmdir()
    return total, time.perf_counter() - started


REDIS_PATTERN = "gen:history:{account_id}:*"


def seed_redis(url: str, keyspace: int, account: int) -> None:
    """The account's keys, and other keys up to `keyspace` (kept between runs)."""
    import redis

    client = redis.Redis.from_url(url)
    client.mset({f"gen:history:{ACCOUNT}:{i}": b"v" for i in range(account)})
    # A command at a time: a peak in this process would be inherited by the measured ones
    # (Linux keeps ru_maxrss across fork and exec).
    for start in range(0, keyspace - account, 10_000):
        end = min(start + 10_000, keyspace - account)
        client.mset({f"gen:history:acct-other-{i % 500}:{i}": b"v" for i in range(start, end)})
    assert client.dbsize() == keyspace
    client.close()


def _redis_with_target(url: str, batch: int) -> tuple[int, float]:
    from agegate.remediation.targets.base import PurgeContext
    from agegate.remediation.targets.redis import RedisTarget

    target = RedisTarget.from_config(
        {
            "name": "history",
            "kind": "redis",
            "url": url,
            "patterns": [REDIS_PATTERN],
            "account_id_pattern": "[A-Za-z0-9_-]+",
        },
        "bench",
    )
    started, total = time.perf_counter(), 0
    found = target.count(ACCOUNT)
    while gone := target.purge_batch(ACCOUNT, batch, PurgeContext("bench")):
        total += gone
    elapsed = time.perf_counter() - started
    assert total == found
    target.close()
    return total, elapsed


def _redis_raw(url: str, batch: int) -> tuple[int, float]:
    import redis

    from agegate.remediation.targets.redis import SCAN_COUNT

    client = redis.Redis.from_url(url)
    started, total, cursor = time.perf_counter(), 0, 0
    match = REDIS_PATTERN.replace("{account_id}", ACCOUNT)
    while True:
        cursor, keys = client.scan(cursor, match=match, count=SCAN_COUNT)
        for start in range(0, len(keys), batch):
            total += int(client.unlink(*keys[start : start + batch]))
        if cursor == 0:
            break
    elapsed = time.perf_counter() - started
    client.close()
    return total, elapsed


def measured(function: Any, *args: Any) -> tuple[int, float, float]:
    """Run in a fresh process: (items, seconds, peak MiB of that process)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_with_peak, (function, *args))  # type: ignore[no-any-return]


def _with_peak(function: Any, *args: Any) -> tuple[int, float, float]:
    items, seconds = function(*args)
    return items, seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def seed_files(root: Path, count: int) -> None:
    for account, n in ((ACCOUNT, count), ("acct-other-1", count // 10)):
        directory = root / "outputs" / account
        directory.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (directory / f"clip-{i}.mp4").write_bytes(b"x" * 64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--files", type=int, default=10000)
    parser.add_argument("--redis-keyspace", type=int, default=1_000_000)
    parser.add_argument("--redis-account", type=int, default=10_000)
    args = parser.parse_args()
    print(f"{'what':<22} {'items':>9} {'agegate/s':>10} {'raw/s':>10} {'ratio':>6} {'peak MiB':>9}")
    with scratch_database() as url:
        for n in (int(s) for s in args.sizes.split(",")):
            seed(url, n)
            items, seconds, peak = measured(_purge_with_target, url, args.batch)
            seed(url, n)
            raw_items, raw_seconds, _ = measured(_purge_raw, url, args.batch)
            assert items == raw_items == 2 * n, (items, raw_items)
            rate, raw_rate = items / seconds, raw_items / raw_seconds
            print(
                f"{'sql, N=' + format(n, ','):<22} {items:>9,} {rate:>10,.0f} {raw_rate:>10,.0f} {rate / raw_rate:>6.2f} {peak:>9.1f}"
            )
    root = Path(tempfile.mkdtemp())
    try:
        seed_files(root, args.files)
        items, seconds, peak = measured(_files_with_target, str(root), args.batch)
        seed_files(root, args.files)
        shutil.rmtree(root / "outputs" / "acct-other-1")
        raw_items, raw_seconds, _ = measured(_files_raw, str(root), args.batch)
        rate, raw_rate = items / seconds, raw_items / raw_seconds
        print(
            f"{'files':<22} {items:>9,} {rate:>10,.0f} {raw_rate:>10,.0f} {rate / raw_rate:>6.2f} {peak:>9.1f}"
        )
    finally:
        shutil.rmtree(root)
    bench_redis(args.redis_keyspace, args.redis_account, args.batch)
    print(f"batch size {args.batch}; goal: ratio >= 0.5, peak memory flat as N grows")


def bench_redis(keyspace: int, account: int, batch: int) -> None:
    from tests.support.servers import PrivateRedis

    directory = Path(tempfile.mkdtemp())
    server = PrivateRedis(directory)
    server.start()
    try:
        seed_redis(server.url, keyspace, account)
        items, seconds, peak = measured(_redis_with_target, server.url, batch)
        seed_redis(server.url, keyspace, account)
        raw_items, raw_seconds, _ = measured(_redis_raw, server.url, batch)
        assert items == raw_items == account, (items, raw_items)
        rate, raw_rate = items / seconds, raw_items / raw_seconds
        label = f"redis, {keyspace:,} keys"
        print(
            f"{label:<22} {items:>9,} {rate:>10,.0f} {raw_rate:>10,.0f} {rate / raw_rate:>6.2f} {peak:>9.1f}"
        )
    finally:
        server.stop()
        shutil.rmtree(directory)


if __name__ == "__main__":
    main()

"""Drill: a denial binds a process that has never checked anything, with Redis kept or flushed.

Two gunicorn servers with the production config share PostgreSQL and a private redis-server.
A runs one warm worker, which answers the denials. B runs workers that each answer one request
and are then replaced (max_requests 1), so every request B answers is the first one of a
fresh process. Each round denies a new session on A (a 12-year-old in DE) and at once sends
that session an adult's date on B, which must deny it with `prior_underage_declaration`.
Twenty rounds keep Redis; twenty flush it between the denial and the retry, so that only the
database can tell the fresh process.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.functional.test_age_checks import seed_table
from tests.support.drills import report
from tests.support.lockout_drills import CHILD, Server, post, server_env
from tests.support.servers import PrivateRedis

ROUNDS = 20


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_drill_a_denial_binds_a_process_that_never_checked(
    app: Flask,
    settings_overrides: dict[str, Any],
    make_key: Callable[..., dict[str, str]],
    private_redis: PrivateRedis,
    tmp_path: Path,
) -> None:
    seed_table(app)
    key = make_key("age-checks:write")["Authorization"].removeprefix("Bearer ")
    env = server_env(settings_overrides, private_redis.url, tmp_path)
    warm = Server(env, tmp_path / "a.log", 1)
    fresh = Server(env, tmp_path / "b.log", 3, "--max-requests", "1", "--max-requests-jitter", "0")
    let_through: list[str] = []
    after_ms: list[float] = []
    try:
        redis_client = private_redis.client()
        for variant in ("kept", "flushed"):
            for round_ in range(ROUNDS):
                session = f"drill-{variant}-{round_}"
                body = {"date_of_birth": CHILD, "country": "DE", "session_id": session}
                status, first = post(f"{warm.base}/v1/age-checks", key, body)
                assert (status, first["outcome"]) == (200, "denied"), first
                denied_at = time.monotonic()
                if variant == "flushed":
                    redis_client.flushall()
                body = {"date_of_birth": "1990-04-01", "country": "DE", "session_id": session}
                status, retry = post(f"{fresh.base}/v1/age-checks", key, body)
                after_ms.append((time.monotonic() - denied_at) * 1000)
                assert status == 200, retry
                if retry["reason"] != "prior_underage_declaration":
                    let_through.append(f"{session}: {retry['outcome']} {retry['reason']}")
        redis_client.close()
    finally:
        warm.stop()
        fresh.stop()
    pids = fresh.check_pids()
    report(
        "lockout, processes that never checked",
        rounds_per_variant=ROUNDS,
        retries_let_through=len(let_through),
        fresh_processes=len(set(pids)),
        retry_answered_ms_after_the_denial_median=f"{statistics.median(after_ms):.0f}",
        max=f"{max(after_ms):.0f}",
    )
    assert let_through == []
    # Every retry was the first check of a process of its own.
    assert len(pids) == len(set(pids)) == 2 * ROUNDS

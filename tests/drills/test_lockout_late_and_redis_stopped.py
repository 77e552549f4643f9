"""Drill: the lockout holds with Redis stopped, a denial's record late or not.

Two gunicorn servers with the production config, one warm worker each, share PostgreSQL and a
private redis-server, to which both subscribe; then the redis-server is killed and stays
down, so that no message carries a lockout. Each round denies a new session on one server and
at once sends that session an adult's date on the other, which must deny it with
`prior_underage_declaration`. In ten rounds another connection locks the table against
writes for two seconds while the denial is being recorded, so that its commit comes that
much later; twenty rounds follow without a lock.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from flask import Flask

from tests.functional.test_age_checks import seed_table
from tests.support.drills import report
from tests.support.lockout_drills import Server, deny_then_retry, server_env, warm
from tests.support.servers import PrivateRedis

LATE_ROUNDS = 10
LATE_SECONDS = 2.0
STOPPED_ROUNDS = 20


def test_drill_lockout_with_redis_stopped_and_late_records(
    app: Flask,
    settings_overrides: dict[str, Any],
    make_key: Callable[..., dict[str, str]],
    tmp_path: Path,
) -> None:
    seed_table(app)
    key = make_key("age-checks:write")["Authorization"].removeprefix("Bearer ")
    redis_server = PrivateRedis(tmp_path)
    redis_server.start()
    env = server_env(settings_overrides, redis_server.url, tmp_path)
    database = settings_overrides["database_url"].replace("+psycopg", "")
    let_through: list[str] = []
    late_ms: list[float] = []
    retry_ms: dict[str, list[float]] = {"late": [], "redis stopped": []}
    servers: list[Server] = []
    try:
        servers = [Server(env, tmp_path / f"{name}.log", 1) for name in ("a", "b")]
        warm(key, *servers)
        redis_server.stop()
        for round_ in range(LATE_ROUNDS):
            result: dict[str, tuple[str, float, float]] = {}
            session = f"late-{round_}"
            denial = threading.Thread(
                target=lambda s=session, r=result: r.update(late=deny_then_retry(*servers, key, s))
            )
            with psycopg.connect(database) as locker:
                locker.execute("LOCK TABLE age_checks IN EXCLUSIVE MODE")  # writes wait
                denial.start()
                time.sleep(LATE_SECONDS)
            # The lock went with its transaction: the denial commits and is answered, and the
            # retry follows at once.
            denial.join(timeout=60)
            reason, took, after = result["late"]
            late_ms.append(took)
            retry_ms["late"].append(after)
            if reason != "prior_underage_declaration":
                let_through.append(f"{session}: {reason}")
        for round_ in range(STOPPED_ROUNDS):
            reason, _took, after = deny_then_retry(*servers, key, f"stopped-{round_}")
            retry_ms["redis stopped"].append(after)
            if reason != "prior_underage_declaration":
                let_through.append(f"stopped-{round_}: {reason}")
    finally:
        for server in servers:
            server.stop()
        redis_server.stop()
    report(
        "lockout, Redis stopped, late records",
        late_rounds=LATE_ROUNDS,
        late_denials_answered_in_ms_median=f"{statistics.median(late_ms):.0f}",
        rounds_with_redis_stopped=STOPPED_ROUNDS,
        retries_let_through=len(let_through),
        retry_ms_median_late=f"{statistics.median(retry_ms['late']):.0f}",
        retry_ms_median_redis_stopped=f"{statistics.median(retry_ms['redis stopped']):.0f}",
    )
    assert let_through == []
    # The answers waited for their records, which the lock held back.
    assert min(late_ms) >= (LATE_SECONDS - 0.5) * 1000

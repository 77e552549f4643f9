"""Drill: two processes and no Redis: a PostgreSQL-only deployment, or the embedded SQLite.

Two gunicorn servers with the production config, one warm worker each, share the suite's
database (PostgreSQL in its pass, one SQLite file in the embedded default's) and no Redis,
so no message ever carries a lockout. Each round denies a new session on one and at once
sends that session an adult's date on the other, which must deny it with
`prior_underage_declaration`.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask

from tests.functional.test_age_checks import seed_table
from tests.support.drills import report
from tests.support.lockout_drills import Server, deny_then_retry, server_env, warm

ROUNDS = 20


def test_drill_lockout_between_two_processes_without_redis(
    app: Flask,
    settings_overrides: dict[str, Any],
    make_key: Callable[..., dict[str, str]],
    tmp_path: Path,
) -> None:
    seed_table(app)
    key = make_key("age-checks:write")["Authorization"].removeprefix("Bearer ")
    env = server_env(settings_overrides, "", tmp_path)
    let_through: list[str] = []
    retry_ms: list[float] = []
    servers: list[Server] = []
    try:
        servers = [Server(env, tmp_path / f"{name}.log", 1) for name in ("a", "b")]
        warm(key, *servers)
        for round_ in range(ROUNDS):
            # Each server denies in turn, so that both directions are tried.
            denier, other = servers if round_ % 2 == 0 else servers[::-1]
            reason, _took, after = deny_then_retry(denier, other, key, f"no-redis-{round_}")
            retry_ms.append(after)
            if reason != "prior_underage_declaration":
                let_through.append(f"no-redis-{round_}: {reason}")
    finally:
        for server in servers:
            server.stop()
    report(
        "lockout without Redis",
        database=settings_overrides["database_url"].split(":", 1)[0].split("+")[0],
        rounds=ROUNDS,
        retries_let_through=len(let_through),
        retry_ms_median=f"{statistics.median(retry_ms):.0f}",
    )
    assert let_through == []

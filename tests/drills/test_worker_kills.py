"""Drill: workers SIGKILLed in the middle of purges, 20 times: nothing is lost or miscounted.

Each round starts an `agegate worker` process, waits until it holds the lease of a case it
is purging, lets it work a random moment, and kills it with SIGKILL. A kill counts when
the dead worker left its lease behind mid-purge; the drill goes on until 20 have. Then two
workers finish. Every case completes, every receipt says found = purged and remaining 0,
each kill's case was re-claimed by a successor, and the bystander's rows are untouched.
"""

from __future__ import annotations

import random
import signal
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import func, select

from agegate.extensions import db
from agegate.flags.models import FlagReason
from agegate.remediation.models import Case, CaseEvent, CaseState, CaseTarget, Receipt
from tests.support.drills import report, wait_for
from tests.support.workers import (
    make_platform,
    open_confirmed_cases,
    platform_targets,
    rows_of,
    start_worker,
    worker_env,
)

CHILDREN = [f"acct-c{i}" for i in range(10)]
BYSTANDER = "acct-bystander"
GENERATIONS = 600  # per account, each with two outputs: 1,800 rows per account
BATCH = 10  # rows per purge batch: many small commits to land kills between
KILLS = 20
MAX_ROUNDS = 40  # a kill can land between two steps; past this, the drill is broken


def test_drill_sigkilled_workers_never_lose_a_case_or_miscount(
    app_factory: Callable[..., Flask], settings_overrides: dict[str, Any], tmp_path: Path
) -> None:
    platform = tmp_path / "platform.db"
    make_platform(platform, dict.fromkeys([*CHILDREN, BYSTANDER], GENERATIONS))
    settings = {
        "targets_file": str(platform_targets(tmp_path, platform)),
        "purge_batch_size": BATCH,
        "lease_seconds": 1,
    }
    app = app_factory(**settings)
    bystander_before = rows_of(platform, BYSTANDER)
    open_confirmed_cases(app, CHILDREN, FlagReason.PARENTAL_REQUEST)
    env = worker_env(settings_overrides, settings)
    rng = random.Random(7)
    killed: dict[str, float] = {}  # owner whose kill left a lease mid-purge → when
    rounds = 0
    started = time.monotonic()
    while len(killed) < KILLS:
        rounds += 1
        assert rounds <= MAX_ROUNDS, f"only {len(killed)} of {rounds - 1} kills landed mid-purge"
        assert not all_done(app), f"the cases completed after {len(killed)} kills: add rows"
        owner, at = kill_mid_purge(app, env, rng)
        if owner is not None:
            killed[owner] = at
    kill_phase = time.monotonic() - started
    left = sum(len(rows_of(platform, account)) for account in CHILDREN)

    finishers = [start_worker(env) for _ in range(2)]  # two at once: leases keep them apart
    try:
        finish = wait_for(lambda: all_done(app), 120, "every case completes", every=0.3)
    finally:
        for worker in finishers:
            worker.terminate()
            worker.wait(timeout=30)

    with app.app_context(), db.new_session() as s:
        receipts = s.scalars(select(Receipt)).all()
        reclaims = s.scalars(
            select(CaseEvent).where(CaseEvent.event == "case.lease_reclaimed")
        ).all()
    assert len(receipts) == len(CHILDREN)
    for receipt in receipts:
        (target,) = receipt.body["targets"]
        assert (target["found"], target["purged"], target["remaining"]) == (
            GENERATIONS * 3,
            GENERATIONS * 3,
            0,
        )
    reclaimed_after = {
        e.data["previous_owner"]: e.at.timestamp() - killed[e.data["previous_owner"]]
        for e in reclaims
        if e.data["previous_owner"] in killed
    }
    assert set(reclaimed_after) == set(killed), "a killed worker's case was never re-claimed"
    for account in CHILDREN:
        assert rows_of(platform, account) == []
    assert rows_of(platform, BYSTANDER) == bystander_before  # untouched, row for row
    report(
        "worker-kills",
        cases=len(CHILDREN),
        rows_per_case=GENERATIONS * 3,
        kills_mid_purge=len(killed),
        kills_in_all=rounds,
        lease_reclaims=len(reclaims),
        kill_to_reclaim_s=f"median {statistics.median(reclaimed_after.values()):.2f}"
        f" max {max(reclaimed_after.values()):.2f}",
        kill_phase_s=f"{kill_phase:.1f}",
        rows_left_after_kills=left,
        finish_after_kills_s=f"{finish:.1f}",
    )


def kill_mid_purge(app: Flask, env: dict[str, str], rng: random.Random) -> tuple[str | None, float]:
    """Start a worker and SIGKILL it after a random amount of purging (progress, not time:
    the drill is the same whatever the machine's speed). Returns the lease it left behind
    mid-purge, if any (a kill can land between two steps), and when it died."""
    worker = start_worker(env)
    try:
        wait_for(lambda: purging_owner(app, worker.pid) is not None, 60, "a worker purges")
        goal = purged(app) + rng.randint(1, 30) * BATCH
        wait_for(
            lambda: purged(app) >= goal or purging_owner(app, worker.pid) is None,
            60,
            "the purge progresses",
            every=0.02,
        )
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    return purging_owner(app, worker.pid), time.time()


def purging_owner(app: Flask, pid: int | None) -> str | None:
    """The lease owner of a case this worker process holds while purging, if any."""
    with app.app_context(), db.new_session() as s:
        owners = s.scalars(
            select(Case.lease_owner).where(
                Case.state == CaseState.PURGING,
                Case.lease_owner.like(f"%:{pid}:%"),
            )
        ).all()
    return owners[0] if owners else None


def purged(app: Flask) -> int:
    """Rows purged so far, as the workers have recorded them (after every batch)."""
    with app.app_context(), db.new_session() as s:
        return int(s.scalar(select(func.coalesce(func.sum(CaseTarget.purged), 0))))


def all_done(app: Flask) -> bool:
    with app.app_context(), db.new_session() as s:
        states = s.scalars(select(Case.state)).all()
    return len(states) == len(CHILDREN) and all(state is CaseState.COMPLETED for state in states)

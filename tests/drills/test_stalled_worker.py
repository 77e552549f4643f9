"""Drill: a worker stalled past its lease is taken over, and stops at its next write.

Two `agegate worker` processes share one case: a child's 300 rows purged through a slowed
`sql` target (tests/support/slow_sql_target.py) in batches of 10. Once the purge is under
way, the worker holding the case is frozen (SIGSTOP) longer than its 2 s lease, heartbeat
and all; the other worker takes the case over. Then the first is let go (SIGCONT): it ends
the batch it was in, and its next write is refused (`engine.lease_lost`), so nothing it
does is recorded. The case completes once, with an exact receipt, and a bystander's rows
are untouched.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask

from tests.drills.test_failing_targets import case_of, reach, worker_metrics
from tests.support.drills import report, wait_for
from tests.support.metrics import sample
from tests.support.workers import (
    items_of,
    make_platform,
    open_confirmed_cases,
    rows_of,
    slowed_targets,
    start_worker,
    worker_env,
)

CHILD, BYSTANDER = "acct-child", "acct-bystander"
LEASE = 2


def test_drill_a_stalled_worker_is_taken_over_and_stops_at_its_next_write(
    app_factory: Callable[..., Flask],
    settings_overrides: dict[str, Any],
    make_key: Callable[..., dict[str, str]],
    tmp_path: Path,
) -> None:
    platform = tmp_path / "platform.db"
    make_platform(platform, {CHILD: 100, BYSTANDER: 10})
    targets = slowed_targets(tmp_path, platform)
    settings = {
        "targets_file": str(targets),
        "purge_batch_size": 10,
        "lease_seconds": LEASE,
        "target_plugins": "tests.support.slow_sql_target",
    }
    app = app_factory(**settings)
    client = app.test_client()
    headers = make_key("cases:read")
    bystander_before = rows_of(platform, BYSTANDER)
    total = items_of(platform, CHILD)
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = worker_env(settings_overrides, settings)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    logs = [tmp_path / "worker-0.log", tmp_path / "worker-1.log"]
    open_confirmed_cases(app, [CHILD])
    first = start_worker(env, log=logs[0])
    second = None
    try:
        case_id = case_of(client, headers, CHILD)
        wait_for(lambda: items_of(platform, CHILD) <= total - 30, 30, "purging to begin")
        os.kill(first.pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        at_stop = items_of(platform, CHILD)
        second = start_worker(env, log=logs[1])
        wait_for(lambda: items_of(platform, CHILD) < at_stop - 10, 30, "the takeover")
        taken_over_after = time.monotonic() - stopped_at
        os.kill(first.pid, signal.SIGCONT)
        reach(client, headers, case_id, "completed")
        case = client.get(f"/v1/cases/{case_id}", headers=headers).get_json()
        document = client.get(f"/v1/cases/{case_id}/receipt", headers=headers).get_json()
        time.sleep(1)  # the first worker, let go, has had time for its next write
        counted = worker_metrics(metrics_dir)
    finally:
        for worker in (first, second):
            if worker is not None:
                os.kill(worker.pid, signal.SIGCONT)
                worker.terminate()
                worker.wait(timeout=30)

    assert taken_over_after >= LEASE
    events = [e["event"] for e in case["timeline"]]
    assert events.count("case.lease_reclaimed") == 1 and events.count("case.completed") == 1
    (target,) = document["receipt"]["targets"]
    assert (target["found"], target["purged"], target["remaining"]) == (total, total, 0)
    first_log = [json.loads(line) for line in logs[0].read_text().splitlines()]
    assert [line["event"] for line in first_log if line["event"] == "engine.lease_lost"] == [
        "engine.lease_lost"
    ]
    assert sample(counted, "agegate_leases_lost_total") == 1
    assert sample(counted, "agegate_receipts_signed_total") == 1
    assert items_of(platform, CHILD) == 0
    assert rows_of(platform, BYSTANDER) == bystander_before
    report(
        "stalled-worker",
        items=total,
        left_when_frozen=at_stop,
        taken_over_after_s=f"{taken_over_after:.1f}",
        leases_lost=1,
    )

"""Drill: a legal hold placed while a target is being purged binds at once.

An `agegate worker` process purges a child's rows through a slowed `sql` target
(tests/support/slow_sql_target.py), in batches of 10 items. Once rows have started to go,
legal places a hold on every target. From the hold's commit on, the target may finish the
batch in flight and nothing more: the rows left then stay, and the case waits `on_hold`.
Once the hold is released the case completes, and its signed receipt says the target was
held and how much was purged before the hold. A bystander's rows are untouched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask

from agegate.remediation.receipts import verify
from tests.drills.test_failing_targets import case_of, reach
from tests.support.drills import report, wait_for
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
GENERATIONS, BATCH = 100, 10  # 300 items: 30 batches of 10, about 0.05 s each


def test_drill_a_hold_placed_mid_purge_binds_at_once(
    app_factory: Callable[..., Flask],
    settings_overrides: dict[str, Any],
    make_key: Callable[..., dict[str, str]],
    tmp_path: Path,
) -> None:
    platform = tmp_path / "platform.db"
    make_platform(platform, {CHILD: GENERATIONS, BYSTANDER: 10})
    targets = slowed_targets(tmp_path, platform)
    settings = {
        "targets_file": str(targets),
        "purge_batch_size": BATCH,
        "target_plugins": "tests.support.slow_sql_target",
    }
    app = app_factory(**settings)
    client = app.test_client()
    headers = make_key("cases:read", "cases:write", "legal-holds:write")
    bystander_before = rows_of(platform, BYSTANDER)
    total = items_of(platform, CHILD)
    open_confirmed_cases(app, [CHILD])
    worker = start_worker(worker_env(settings_overrides, settings))
    try:
        case_id = case_of(client, headers, CHILD)
        wait_for(lambda: items_of(platform, CHILD) <= total - 3 * BATCH, 30, "purging to begin")
        placed = client.post(
            f"/v1/accounts/{CHILD}/legal-holds", json={"reason": "litigation"}, headers=headers
        )
        assert placed.status_code == 201
        at_hold = items_of(platform, CHILD)
        reach(client, headers, case_id, "on_hold")
        stopped = items_of(platform, CHILD)
        time.sleep(1.0)  # twenty batches' time: none of them may run
        later = items_of(platform, CHILD)
        held_case = client.get(f"/v1/cases/{case_id}", headers=headers).get_json()

        released = client.delete(f"/v1/legal-holds/{placed.get_json()['id']}", headers=headers)
        assert released.status_code == 200
        reach(client, headers, case_id, "completed")
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    assert 0 < later == stopped, (at_hold, stopped, later)
    assert at_hold - stopped <= BATCH  # at most the batch in flight went after the commit
    (step,) = held_case["targets"]
    assert step["state"] == "held"
    document = client.get(f"/v1/cases/{case_id}/receipt", headers=headers).get_json()
    assert verify(document, client.get("/v1/receipts/public-key").get_json())
    receipt = document["receipt"]
    assert receipt["targets"] == [
        {
            "name": "platform-db",
            "kind": "slow-sql",
            "found": total,
            "purged": total,
            "remaining": 0,
            "held": True,
            "purged_before_hold": total - stopped,
        }
    ]
    (hold,) = receipt["holds"]
    assert hold["id"] == placed.get_json()["id"] and hold["released_at"]
    assert items_of(platform, CHILD) == 0
    assert rows_of(platform, BYSTANDER) == bystander_before
    report(
        "hold-mid-purge",
        items=total,
        left_at_hold_commit=at_hold,
        left_when_stopped=stopped,
        left_1s_later=later,
        purged_after_commit=at_hold - stopped,
    )

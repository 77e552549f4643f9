"""Drill: a workflow step that raises on every try fails its case, and never loops.

An `agegate worker` process works two cases. One account's purge has a target whose count
raises an unexpected error (tests/support/poison_target.py); the other account's flag
carries evidence that merely looks like a link to an age check (`age-check:see ticket 12`),
which once broke the receipt step on every try. The first case must reach `failed` after
`AGEGATE_MAX_ATTEMPTS` step failures and then stay still (its timeline and the audit log
stop growing); the second must complete. Once the target is mended, `retry` completes the
first, and a bystander's rows are untouched throughout.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import func, select

from agegate.audit.models import AuditEvent
from agegate.db import utcnow
from agegate.extensions import db
from agegate.flags.models import Confidence, FlagReason
from agegate.remediation import service
from tests.drills.test_failing_targets import case_of, reach, worker_metrics
from tests.support.drills import report
from tests.support.metrics import sample
from tests.support.workers import (
    make_platform,
    open_confirmed_cases,
    platform_targets,
    rows_of,
    start_worker,
    worker_env,
)

POISONED, LOOK_ALIKE, BYSTANDER = "acct-poisoned", "acct-look-alike", "acct-bystander"
MAX_ATTEMPTS = 3


def test_drill_a_poison_step_fails_the_case_after_its_attempts(
    app_factory: Callable[..., Flask],
    settings_overrides: dict[str, Any],
    make_key: Callable[..., dict[str, str]],
    tmp_path: Path,
) -> None:
    platform = tmp_path / "platform.db"
    make_platform(platform, dict.fromkeys([POISONED, LOOK_ALIKE, BYSTANDER], 10))
    targets, marker = platform_targets(tmp_path, platform), tmp_path / "poisoned"
    marker.touch()
    with targets.open("a") as fh:
        fh.write(f"  - {{name: poison, kind: poison, account: {POISONED}, marker: '{marker}'}}\n")
    settings = {
        "targets_file": str(targets),
        "max_attempts": MAX_ATTEMPTS,
        "retry_backoff_cap_seconds": 1,
        "lease_seconds": 2,
        "target_plugins": "tests.support.poison_target",
    }
    app = app_factory(**settings)
    client = app.test_client()
    headers = make_key("cases:read", "cases:write")
    bystander_before = rows_of(platform, BYSTANDER)
    open_confirmed_cases(app, [POISONED])
    with app.app_context(), db.new_session() as s:
        service.flag_account(
            s,
            account_id=LOOK_ALIKE,
            reason=FlagReason.USER_REPORT,
            confidence=Confidence.CONFIRMED,
            evidence="age-check:see ticket 12",
            flagged_by="drill",
            now=utcnow(),
        )
        s.commit()
    log, metrics_dir = tmp_path / "worker.log", tmp_path / "metrics"
    metrics_dir.mkdir()
    env = worker_env(settings_overrides, settings)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    started = time.monotonic()
    worker = start_worker(env, log=log)
    try:
        poisoned, look_alike = (
            case_of(client, headers, POISONED),
            case_of(client, headers, LOOK_ALIKE),
        )
        reach(client, headers, look_alike, "completed")
        reach(client, headers, poisoned, "failed")
        failed_after = time.monotonic() - started
        failed = client.get(f"/v1/cases/{poisoned}", headers=headers).get_json()
        audit_when_failed = audit_events(app)
        time.sleep(3)  # longer than a lease and a backoff: a failed case stays still
        still = client.get(f"/v1/cases/{poisoned}", headers=headers).get_json()
        audit_later = audit_events(app)
        counted = worker_metrics(metrics_dir)
        listed = client.get("/v1/cases?state=failed", headers=headers).get_json()["items"]

        marker.unlink()  # the target is mended
        assert client.post(f"/v1/cases/{poisoned}/retry", headers=headers).status_code == 200
        reach(client, headers, poisoned, "completed")
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    steps = [e for e in failed["timeline"] if e["event"] == "case.step_failed"]
    assert [e["data"]["attempt"] for e in steps] == list(range(1, MAX_ATTEMPTS + 1))
    assert {e["data"]["error"] for e in steps} == {"RuntimeError: poisoned count (drill)"}
    assert failed["last_error"] == (
        f"the awaiting_purge step failed {MAX_ATTEMPTS} times: RuntimeError: poisoned count (drill)"
    )
    assert "case.lease_reclaimed" not in [e["event"] for e in failed["timeline"]]
    assert len(still["timeline"]) == len(failed["timeline"])
    assert audit_later == audit_when_failed
    assert [c["id"] for c in listed] == [poisoned]
    assert sample(counted, "agegate_step_failures_total", state="awaiting_purge") == MAX_ATTEMPTS
    assert sample(counted, "agegate_cases_failed_total", target="") == 1
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    logged = [
        line
        for line in lines
        if line.get("event") == "engine.step_failed" and line.get("case_id") == poisoned
    ]
    assert len(logged) == MAX_ATTEMPTS and all(line["level"] == "error" for line in logged)
    receipt = client.get(f"/v1/cases/{look_alike}/receipt", headers=headers).get_json()["receipt"]
    assert receipt["rules"] == []
    for account in (POISONED, LOOK_ALIKE):
        assert rows_of(platform, account) == []
    assert rows_of(platform, BYSTANDER) == bystander_before
    report(
        "poison-step",
        attempts=len(steps),
        failed_after_s=f"{failed_after:.1f}",
        timeline_events_when_failed=len(failed["timeline"]),
        timeline_events_3s_later=len(still["timeline"]),
        audit_events_3s_later_minus_at_failure=audit_later - audit_when_failed,
    )


def audit_events(app: Flask) -> int:
    with app.app_context(), db.new_session() as s:
        return int(s.scalar(select(func.count()).select_from(AuditEvent)) or 0)

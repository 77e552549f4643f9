"""Several `agegate worker` processes share the cases; no two ever purge one case at once."""

from __future__ import annotations

import itertools
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import select

from agegate.db import utcnow
from agegate.extensions import db
from agegate.flags.models import Confidence, FlagReason
from agegate.remediation import service
from agegate.remediation.models import Case, CaseState
from tests.support.journal_target import make_store

ROOT = Path(__file__).resolve().parents[2]
ACCOUNTS = {f"acct-{i}": 60 for i in range(8)}


def test_worker_processes_never_work_one_case_at_the_same_time(
    app_factory: Callable[..., Flask], settings_overrides: dict[str, Any], tmp_path: Path
) -> None:
    store = tmp_path / "journal.db"
    make_store(str(store), ACCOUNTS)
    targets = tmp_path / "targets.yaml"
    targets.write_text(f'targets:\n  - {{name: journal, kind: journal, path: "{store}"}}\n')
    settings = {
        "targets_file": str(targets),
        "target_plugins": "tests.support.journal_target",
        "purge_batch_size": 5,
        "lease_seconds": 5,
    }
    app = app_factory(**settings)
    with app.app_context(), db.new_session() as s:
        for account in ACCOUNTS:
            service.flag_account(
                s,
                account_id=account,
                reason=FlagReason.OTHER,
                confidence=Confidence.CONFIRMED,
                evidence=None,
                flagged_by="test",
                now=utcnow(),
            )
        s.commit()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        **{f"AGEGATE_{k.upper()}": str(v) for k, v in {**settings_overrides, **settings}.items()},
    }
    command = [sys.executable, "-c", "from agegate.cli import main; main()", "worker"]
    workers = [
        subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(3)
    ]
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with app.app_context(), db.new_session() as s:
                states = s.scalars(select(Case.state)).all()
            if all(state is CaseState.COMPLETED for state in states):
                break
            time.sleep(0.3)
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(timeout=30)
    assert all(state is CaseState.COMPLETED for state in states)

    conn = sqlite3.connect(store)
    try:
        assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 0
        journal = conn.execute(
            "SELECT account_id, pid, started, ended FROM journal ORDER BY account_id, started"
        ).fetchall()
    finally:
        conn.close()
    assert len({pid for _, pid, _, _ in journal}) > 1  # the work was shared between processes
    for (account, _, _, ended), (next_account, _, next_started, _) in itertools.pairwise(journal):
        if account == next_account:
            assert next_started >= ended, f"two calls for {account} overlapped"

"""Several `agegate worker` processes share the cases; no two ever purge one case at once."""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import select

from agegate.extensions import db
from agegate.remediation.models import Case, CaseState
from tests.support.journal_target import make_store
from tests.support.workers import open_confirmed_cases, start_worker, worker_env

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
    open_confirmed_cases(app, ACCOUNTS)
    env = worker_env(settings_overrides, settings)
    workers = [start_worker(env) for _ in range(3)]
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

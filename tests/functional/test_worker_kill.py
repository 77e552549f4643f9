"""Workers killed with SIGKILL in the middle of purges, again and again: nothing is lost."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import select

from agegate.extensions import db
from agegate.flags.models import FlagReason
from agegate.remediation.models import Case, CaseEvent, CaseState, Receipt
from tests.support.workers import open_confirmed_cases, start_worker, worker_env

CHILDREN = ["acct-c1", "acct-c2", "acct-c3"]
BYSTANDER = "acct-bystander"
GENERATIONS = 3000  # per account, each with two outputs: 9,000 rows per account


def make_platform(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE generations (id INTEGER PRIMARY KEY, account_id TEXT NOT NULL, prompt TEXT);"
        "CREATE TABLE generation_outputs (id INTEGER PRIMARY KEY, generation_id INTEGER NOT NULL"
        " REFERENCES generations(id), uri TEXT);"
    )
    gen_id = out_id = 0
    for account in [*CHILDREN, BYSTANDER]:
        for _ in range(GENERATIONS):
            gen_id += 1
            conn.execute(
                "INSERT INTO generations VALUES (?, ?, ?)", (gen_id, account, f"prompt {gen_id}")
            )
            for _ in range(2):
                out_id += 1
                conn.execute(
                    "INSERT INTO generation_outputs VALUES (?, ?, ?)",
                    (out_id, gen_id, f"out/{out_id}.mp4"),
                )
    conn.commit()
    conn.close()


def rows_of(path: Path, account: str) -> list[Any]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT g.id, g.prompt, o.id, o.uri FROM generations g LEFT JOIN generation_outputs o"
            " ON o.generation_id = g.id WHERE g.account_id = ? ORDER BY g.id, o.id",
            (account,),
        ).fetchall()
    finally:
        conn.close()


def test_sigkilled_workers_never_lose_a_case_or_miscount(
    app_factory: Callable[..., Flask], settings_overrides: dict[str, Any], tmp_path: Path
) -> None:
    platform = tmp_path / "platform.db"
    make_platform(platform)
    targets = tmp_path / "targets.yaml"
    targets.write_text(
        "targets:\n"
        '  - name: platform-db\n    kind: sql\n    url: "sqlite:///${PLATFORM_DB}"\n    tables:\n'
        "      - {table: generations, account_column: account_id}\n"
        "      - {table: generation_outputs, parent: {table: generations, column: generation_id, references: id}}\n"
    )
    settings = {"targets_file": str(targets), "purge_batch_size": 10, "lease_seconds": 1}
    os.environ["PLATFORM_DB"] = str(platform)
    try:
        app = app_factory(**settings)
        bystander_before = rows_of(platform, BYSTANDER)
        open_confirmed_cases(app, CHILDREN, FlagReason.PARENTAL_REQUEST)
        env = worker_env(settings_overrides, settings)
        kills = 0
        rng = random.Random(7)
        while kills < 20 and not all_done(app):
            worker = start_worker(env)
            time.sleep(rng.uniform(0.5, 1.0))
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            kills += 1
        finishers = [start_worker(env) for _ in range(2)]  # two at once: leases keep them apart
        deadline = time.monotonic() + 90
        while not all_done(app) and time.monotonic() < deadline:
            time.sleep(0.5)
        for worker in finishers:
            worker.terminate()
            worker.wait(timeout=30)
        assert all_done(app), "not every case completed"
    finally:
        os.environ.pop("PLATFORM_DB", None)

    with app.app_context(), db.new_session() as s:
        receipts = s.scalars(select(Receipt)).all()
        reclaims = s.scalars(
            select(CaseEvent).where(CaseEvent.event == "case.lease_reclaimed")
        ).all()
    assert len(receipts) == 3
    for receipt in receipts:
        (target,) = receipt.body["targets"]
        assert (target["found"], target["purged"], target["remaining"]) == (
            GENERATIONS * 3,
        ) * 2 + (0,)
    assert kills >= 5 and len(reclaims) >= 3, (kills, len(reclaims))  # work was interrupted
    for account in CHILDREN:
        assert rows_of(platform, account) == []
    assert rows_of(platform, BYSTANDER) == bystander_before  # untouched, row for row


def all_done(app: Flask) -> bool:
    with app.app_context(), db.new_session() as s:
        states = s.scalars(select(Case.state)).all()
    return len(states) == 3 and all(state is CaseState.COMPLETED for state in states)

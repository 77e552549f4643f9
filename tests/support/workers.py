"""Helpers for tests that run `agegate worker` as real processes."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from agegate.db import utcnow
from agegate.extensions import db
from agegate.flags.models import Confidence, FlagReason
from agegate.remediation import service

ROOT = Path(__file__).resolve().parents[2]
WORKER = [sys.executable, "-c", "from agegate.cli import main; main()", "worker"]


def open_confirmed_cases(
    app: Flask, accounts: Iterable[str], reason: FlagReason = FlagReason.OTHER
) -> None:
    """A confirmed flag (no appeal window) for each account: the cases are due at once."""
    with app.app_context(), db.new_session() as s:
        for account in accounts:
            service.flag_account(
                s,
                account_id=account,
                reason=reason,
                confidence=Confidence.CONFIRMED,
                evidence=None,
                flagged_by="test",
                now=utcnow(),
            )
        s.commit()


def worker_env(*settings: dict[str, Any]) -> dict[str, str]:
    """The environment a worker process needs to share the test's settings."""
    merged: dict[str, Any] = {}
    for part in settings:
        merged.update(part)
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        **{f"AGEGATE_{k.upper()}": str(v) for k, v in merged.items()},
    }


def start_worker(env: dict[str, str], log: Path | None = None) -> subprocess.Popen[bytes]:
    """An `agegate worker` process; its stderr (the log) goes to `log` when given."""
    with open(log or os.devnull, "ab") as stderr:
        return subprocess.Popen(WORKER, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)


def make_platform(path: Path, generations: Mapping[str, int]) -> None:
    """A platform database (SQLite): per account, generations with two outputs each."""
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE generations (id INTEGER PRIMARY KEY, account_id TEXT NOT NULL, prompt TEXT);"
        "CREATE TABLE generation_outputs (id INTEGER PRIMARY KEY, generation_id INTEGER NOT NULL"
        " REFERENCES generations(id), uri TEXT);"
    )
    gen_id = out_id = 0
    for account, count in generations.items():
        for _ in range(count):
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


def platform_targets(directory: Path, platform: Path) -> Path:
    """A targets file with one `sql` target over the platform database."""
    targets = directory / "targets.yaml"
    targets.write_text(
        "targets:\n"
        f'  - name: platform-db\n    kind: sql\n    url: "sqlite:///{platform}"\n    tables:\n'
        "      - {table: generations, account_column: account_id}\n"
        "      - {table: generation_outputs, parent: {table: generations, column: generation_id, references: id}}\n"
    )
    return targets


def slowed_targets(directory: Path, platform: Path) -> Path:
    """platform_targets with the `sql` target slowed before each batch (slow_sql_target.py);
    a worker needs AGEGATE_TARGET_PLUGINS=tests.support.slow_sql_target."""
    targets = platform_targets(directory, platform)
    targets.write_text(targets.read_text().replace("kind: sql", "kind: slow-sql"))
    return targets


def items_of(path: Path, account: str) -> int:
    """How many of the account's generations and outputs the platform still holds."""
    conn = sqlite3.connect(path)
    try:
        gens = conn.execute("SELECT count(*) FROM generations WHERE account_id = ?", (account,))
        outs = conn.execute(
            "SELECT count(*) FROM generation_outputs o JOIN generations g"
            " ON o.generation_id = g.id WHERE g.account_id = ?",
            (account,),
        )
        return int(gens.fetchone()[0]) + int(outs.fetchone()[0])
    finally:
        conn.close()


def rows_of(path: Path, account: str) -> list[Any]:
    """Every row of the account's generations and outputs, in a stable order."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT g.id, g.prompt, o.id, o.uri FROM generations g LEFT JOIN generation_outputs o"
            " ON o.generation_id = g.id WHERE g.account_id = ? ORDER BY g.id, o.id",
            (account,),
        ).fetchall()
    finally:
        conn.close()

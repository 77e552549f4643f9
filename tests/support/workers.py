"""Helpers for tests that run `agegate worker` as real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
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


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        WORKER, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

"""Measure how long a SIGKILLed worker's case waits before another worker takes it over.

    .venv/bin/python -m tests.benchmarks.reclaim [--lease 10] [--runs 3] [--postgres]

Starts `agegate worker`, lets it begin purging a large case, kills it with SIGKILL, starts a
second worker at once, and prints the time from the kill to the `case.lease_reclaimed`
event (expected: about one lease length). SQLite by default; --postgres uses the local
server (AGEGATE_BENCH_DATABASE_URL) in a database it creates and drops.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path

from sqlalchemy import create_engine, text

from agegate.remediation.receipts import new_key_pem
from tests.benchmarks.age_checks import scratch_database

AGEGATE = [sys.executable, "-c", "from agegate.cli import main; main()"]


def make_platform(path: Path, rows: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE generations (id INTEGER PRIMARY KEY, account_id TEXT NOT NULL)")
    conn.executemany("INSERT INTO generations (account_id) VALUES (?)", [("acct-big",)] * rows)
    conn.commit()
    conn.close()


@contextmanager
def worker(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [*AGEGATE, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


def wait_for(query: str, database_url: str, timeout: float) -> datetime:
    engine = create_engine(database_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                found = conn.execute(text(query)).scalar()
            if found is not None:
                return found if isinstance(found, datetime) else datetime.fromisoformat(str(found))
            time.sleep(0.05)
    finally:
        engine.dispose()
    raise TimeoutError(query)


def one_run(env: dict[str, str], database_url: str, tmp: Path, lease: int) -> float:
    platform = tmp / f"platform-{time.monotonic_ns()}.db"
    make_platform(platform, 400_000)
    (tmp / "targets.yaml").write_text(
        f'targets:\n  - name: platform-db\n    kind: sql\n    url: "sqlite:///{platform}"\n'
        "    tables: [{table: generations, account_column: account_id}]\n"
    )
    subprocess.run([*AGEGATE, "db", "upgrade"], env=env, check=True, capture_output=True)
    engine = create_engine(database_url)
    with engine.begin() as conn:  # a fresh case for the big account, due now
        conn.execute(text("DELETE FROM case_events"))
        conn.execute(text("DELETE FROM case_targets"))
        conn.execute(text("DELETE FROM flags"))
        conn.execute(text("DELETE FROM cases"))
    engine.dispose()
    subprocess.run(
        [*AGEGATE, "shell"],
        input="from agegate.remediation import service\nfrom agegate.extensions import db\n"
        "from agegate.flags.models import Confidence, FlagReason\nfrom agegate.db import utcnow\n"
        "s = db.new_session()\nservice.flag_account(s, account_id='acct-big', reason=FlagReason.OTHER, "
        "confidence=Confidence.CONFIRMED, evidence=None, flagged_by='bench', now=utcnow())\ns.commit()\n",
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    with worker(env) as first:
        wait_for("SELECT at FROM case_events WHERE event = 'case.purging'", database_url, 60)
        time.sleep(0.5)  # mid-purge
        first.send_signal(signal.SIGKILL)
        killed = time.time()
        first.wait()
    with worker(env):
        reclaimed = wait_for(
            "SELECT at FROM case_events WHERE event = 'case.lease_reclaimed'",
            database_url,
            lease * 4,
        )
    return reclaimed.timestamp() - killed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lease", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp_dir,
        scratch_database() if args.postgres else nullcontext() as pg,
    ):
        tmp = Path(tmp_dir)
        database_url = pg or f"sqlite:///{tmp / 'agegate.db'}"
        env = {
            **os.environ,
            "AGEGATE_DATABASE_URL": database_url,
            "AGEGATE_VAR_DIR": str(tmp / "var"),
            "AGEGATE_SECRET_KEY": "reclaim-benchmark-secret-0123456789abcdef",
            "AGEGATE_RECEIPT_SIGNING_KEY": new_key_pem().decode(),
            "AGEGATE_TARGETS_FILE": str(tmp / "targets.yaml"),
            "AGEGATE_LEASE_SECONDS": str(args.lease),
            "AGEGATE_PURGE_BATCH_SIZE": "50",
            "AGEGATE_SEED_JURISDICTIONS": "false",
        }
        times = [one_run(env, database_url, tmp, args.lease) for _ in range(args.runs)]
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"{backend}, lease {args.lease} s: re-claimed after "
        + ", ".join(f"{t:.1f} s" for t in times)
        + f" (median {statistics.median(times):.1f} s)"
    )


if __name__ == "__main__":
    main()

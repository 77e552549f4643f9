"""`agegate cases replay --since DATE`: after a restore brings purged data back, the completed
cases purge it again, and nothing else."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask
from sqlalchemy import select

from agegate import demo
from agegate.audit import service as audit
from agegate.audit.models import AuditEvent
from agegate.cli import cli
from agegate.db import utcnow
from agegate.extensions import db
from agegate.remediation.models import Case
from agegate.remediation.replay import Replayer
from agegate.remediation.setup import make_worker
from agegate.remediation.targets.base import PurgeContext, TargetError

CHILD = "demo-child-1"
TABLES = ("generations", "generation_history", "uploads", "generation_outputs", "share_links")
CHILD_ROWS, CHILD_FILES = 30, 12  # the demo platform's 6 generations of demo-child-1


@dataclass
class Platform:
    app: Flask
    root: Path  # var/demo: platform.db and media/
    backup: Path  # a copy taken before anything was purged
    headers: dict[str, str]

    @property
    def database(self) -> Path:
        return self.root / "platform.db"

    def flag(self, account: str, confidence: str = "confirmed") -> str:
        response = self.app.test_client().post(
            f"/v1/accounts/{account}/flags",
            json={"reason": "parental_request", "confidence": confidence},
            headers=self.headers,
        )
        assert response.status_code == 201, response.get_json()
        return str(response.get_json()["case"]["id"])

    def case(self, case_id: str) -> dict[str, Any]:
        response = self.app.test_client().get(f"/v1/cases/{case_id}", headers=self.headers)
        return response.get_json()  # type: ignore[no-any-return]

    def complete(self, account: str) -> str:
        case_id = self.flag(account)
        worker = make_worker(self.app)
        while worker.run_once():
            pass
        assert self.case(case_id)["state"] == "completed"
        return case_id

    def restore(self, account: str) -> None:
        """Bring the account's rows and files back from the backup, as a restore would."""
        conn = sqlite3.connect(self.database)
        try:
            conn.execute("ATTACH DATABASE ? AS backup", (str(self.backup / "platform.db"),))
            generations = "SELECT id FROM backup.generations WHERE account_id = :a"
            outputs = (
                f"SELECT id FROM backup.generation_outputs WHERE generation_id IN ({generations})"
            )
            for table, where in (
                ("generations", "account_id = :a"),
                ("generation_history", "account_id = :a"),
                ("uploads", f"generation_id IN ({generations})"),
                ("generation_outputs", f"generation_id IN ({generations})"),
                ("share_links", f"output_id IN ({outputs})"),
            ):
                conn.execute(
                    f"INSERT INTO main.{table} SELECT * FROM backup.{table} WHERE {where}",
                    {"a": account},
                )
            conn.commit()
        finally:
            conn.close()
        for kind in ("uploads", "outputs"):
            shutil.copytree(
                self.backup / "media" / kind / account, self.root / "media" / kind / account
            )

    def rows(self, account: str) -> int:
        return sum(len(rows) for rows in snapshot_rows(self.database, account).values())

    def files(self, account: str) -> int:
        return sum(
            1 for p in (self.root / "media").rglob("*") if p.is_file() and account in p.parts
        )

    def snapshot(self, accounts: tuple[str, ...]) -> tuple[Any, ...]:
        media = self.root / "media"
        files = {
            p.relative_to(media): p.read_bytes()
            for p in sorted(media.rglob("*"))
            if p.is_file() and any(a in p.parts for a in accounts)
        }
        return (*(snapshot_rows(self.database, a) for a in accounts), files)

    def replay(self, *args: str) -> Result:
        return self.app.test_cli_runner().invoke(cli, ["cases", "replay", *args])


def snapshot_rows(database: Path, account: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the account owns, table by table, in full."""
    conn = sqlite3.connect(database)
    gens = "SELECT id FROM generations WHERE account_id = ?"
    outs = f"SELECT id FROM generation_outputs WHERE generation_id IN ({gens})"
    queries = {
        "generations": "SELECT * FROM generations WHERE account_id = ?",
        "generation_history": "SELECT * FROM generation_history WHERE account_id = ?",
        "uploads": f"SELECT * FROM uploads WHERE generation_id IN ({gens})",
        "generation_outputs": f"SELECT * FROM generation_outputs WHERE generation_id IN ({gens})",
        "share_links": f"SELECT * FROM share_links WHERE output_id IN ({outs})",
    }
    try:
        return {
            t: conn.execute(q + " ORDER BY 1", (account,)).fetchall() for t, q in queries.items()
        }
    finally:
        conn.close()


BYSTANDERS = ("demo-teen-2", "demo-adult-3", "demo-adult-4")


@pytest.fixture
def platform(
    app_factory: Callable[..., Flask],
    settings_overrides: dict[str, Any],
    make_key: Callable[..., dict[str, str]],
) -> Iterator[Platform]:
    var_dir = Path(settings_overrides["var_dir"])
    demo.seed(var_dir)
    backup = var_dir.parent / "backup"
    shutil.copytree(var_dir / "demo", backup)
    # Small batches: the replay purges in several batches and renews its lease between them.
    app = app_factory(targets_file=str(demo.targets_file(var_dir)), purge_batch_size=4)
    headers = make_key("flags:write", "cases:read", "cases:write", "legal-holds:write")
    yield Platform(app, var_dir / "demo", backup, headers)


def replayed_events(app: Flask) -> list[AuditEvent]:
    with app.app_context(), db.new_session() as s:
        return list(
            s.scalars(
                select(AuditEvent)
                .where(AuditEvent.event == "case.replayed")
                .order_by(AuditEvent.seq)
            )
        )


def test_replay_purges_exactly_what_a_restore_brought_back(platform: Platform) -> None:
    since = utcnow() - timedelta(minutes=1)
    case_id = platform.complete(CHILD)
    bystanders = platform.snapshot(BYSTANDERS)
    platform.restore(CHILD)
    assert (platform.rows(CHILD), platform.files(CHILD)) == (CHILD_ROWS, CHILD_FILES)

    first = platform.replay("--since", since.isoformat())
    assert first.exit_code == 0, first.output
    assert f"case {case_id} account {CHILD}" in first.output
    assert "platform-db sql: found 30, purged 30, remaining 0" in first.output
    assert "media files: found 12, purged 12, remaining 0" in first.output
    assert (platform.rows(CHILD), platform.files(CHILD)) == (0, 0)
    assert platform.snapshot(BYSTANDERS) == bystanders

    event = replayed_events(platform.app)[-1]
    assert event.subject_id == case_id and event.actor.startswith("cli:")
    assert {t["name"]: (t["found"], t["purged"]) for t in event.data["targets"]} == {
        "platform-db": (30, 30),
        "media": (12, 12),
    }
    timeline = [e["event"] for e in platform.case(case_id)["timeline"]]
    assert timeline[-1] == "case.replayed"

    # Run again (the operator is unsure it finished): nothing left, nothing touched.
    again = platform.replay("--since", since.isoformat())
    assert again.exit_code == 0, again.output
    assert "platform-db sql: found 0, purged 0, remaining 0" in again.output
    assert "media files: found 0, purged 0, remaining 0" in again.output
    assert "0 had data again" in again.output
    assert platform.snapshot(BYSTANDERS) == bystanders
    with platform.app.app_context(), db.new_session() as s:
        assert audit.verify(s).ok
        # The lease taken for the replay is given back.
        case = s.get(Case, uuid.UUID(case_id))
        assert case is not None and case.lease_owner is None


def test_a_bare_date_counts_from_its_first_instant_and_later_cases_only(
    platform: Platform,
) -> None:
    platform.complete(CHILD)
    platform.restore(CHILD)
    # Cases completed before --since are not replayed: their data stays for another run.
    later = platform.replay("--since", (utcnow() + timedelta(seconds=-0.001)).isoformat())
    assert later.exit_code == 0, later.output
    assert "no case completed since" in later.output
    assert platform.rows(CHILD) == CHILD_ROWS
    # Today's date (UTC) began earlier everywhere east of UTC: the case is included.
    today = platform.replay("--since", utcnow().date().isoformat())
    assert today.exit_code == 0, today.output
    assert platform.rows(CHILD) == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("yesterday", "not a valid ISO 8601 date"),
        ("2026-02-30", "not a valid ISO 8601 date"),
        ("2026-11-01T10:00:00", "a timestamp needs an offset"),
        ("2999-01-01", "is in the future"),
    ],
)
def test_a_bad_date_is_refused_and_nothing_is_touched(
    platform: Platform, value: str, message: str
) -> None:
    platform.complete(CHILD)
    platform.restore(CHILD)
    result = platform.replay("--since", value)
    assert result.exit_code == 2
    assert "Invalid value for '--since'" in result.output and message in result.output
    assert platform.rows(CHILD) == CHILD_ROWS
    assert replayed_events(platform.app) == []


def test_without_since_the_command_says_what_is_missing(platform: Platform) -> None:
    result = platform.replay()
    assert result.exit_code == 2 and "Missing option '--since'" in result.output


def test_a_legal_hold_keeps_its_target_through_a_replay(platform: Platform) -> None:
    since = utcnow() - timedelta(minutes=1)
    platform.complete(CHILD)
    platform.restore(CHILD)
    client = platform.app.test_client()
    hold = client.post(
        f"/v1/accounts/{CHILD}/legal-holds",
        json={"reason": "litigation hold (test)", "targets": ["media"]},
        headers=platform.headers,
    )
    assert hold.status_code == 201, hold.get_json()

    result = platform.replay("--since", since.isoformat())
    assert result.exit_code == 0, result.output
    assert "media files: held (legal hold)" in result.output
    assert (platform.rows(CHILD), platform.files(CHILD)) == (0, CHILD_FILES)

    client.delete(f"/v1/legal-holds/{hold.get_json()['id']}", headers=platform.headers)
    released = platform.replay("--since", since.isoformat())
    assert "media files: found 12, purged 12, remaining 0" in released.output
    assert platform.files(CHILD) == 0


class BrokenTarget:
    """Holds the account's items but refuses to delete them until repaired."""

    name, kind = "archive", "memory"

    def __init__(self) -> None:
        self.items = {CHILD: 3}
        self.broken = True

    def check(self) -> None:
        return None

    def count(self, account_id: str) -> int:
        return self.items.get(account_id, 0)

    def purge_batch(self, account_id: str, limit: int, context: PurgeContext) -> int:
        if self.broken:
            raise TargetError("archive is read-only (test)")
        gone = min(limit, self.items.get(account_id, 0))
        self.items[account_id] = self.items.get(account_id, 0) - gone
        return gone


def test_a_target_that_cannot_purge_fails_the_run_and_a_rerun_finishes(
    platform: Platform,
) -> None:
    since = utcnow() - timedelta(minutes=1)
    platform.complete(CHILD)
    platform.restore(CHILD)
    archive = BrokenTarget()
    platform.app.extensions["agegate.targets"] = (
        *platform.app.extensions["agegate.targets"],
        archive,
    )

    failed = platform.replay("--since", since.isoformat())
    assert failed.exit_code == 1, failed.output
    assert "archive memory: FAILED (TargetError: archive is read-only (test))" in failed.output
    assert "not everything could be purged" in failed.output
    # The other targets were purged all the same.
    assert (platform.rows(CHILD), platform.files(CHILD)) == (0, 0)

    archive.broken = False
    fixed = platform.replay("--since", since.isoformat())
    assert fixed.exit_code == 0, fixed.output
    assert "archive memory: found 3, purged 3, remaining 0" in fixed.output
    assert archive.items[CHILD] == 0


def test_an_account_with_an_open_case_is_left_to_that_case(platform: Platform) -> None:
    since = utcnow() - timedelta(minutes=1)
    first = platform.complete(CHILD)
    platform.restore(CHILD)
    # A new flag opens a new case, waiting out its appeal window (suspected: 72 h).
    second = platform.flag(CHILD, confidence="suspected")
    make_worker(platform.app).run_once()

    result = platform.replay("--since", since.isoformat())
    assert result.exit_code == 1
    assert f"case {first} account {CHILD}" in result.output
    assert f"NOT REPLAYED: open case {second} (awaiting_purge) purges this account" in result.output
    assert platform.rows(CHILD) == CHILD_ROWS
    assert replayed_events(platform.app) == []


class GatedTarget(BrokenTarget):
    """Deletes one item per batch, waiting for the test before each."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = False
        self.entered = threading.Event()
        self.go_on = threading.Event()

    def purge_batch(self, account_id: str, limit: int, context: PurgeContext) -> int:
        self.entered.set()
        assert self.go_on.wait(10)
        return super().purge_batch(account_id, 1, context)


def test_two_replays_never_purge_one_case_at_once(platform: Platform) -> None:
    since = utcnow() - timedelta(minutes=1)
    case_id = uuid.UUID(platform.complete(CHILD))
    gated = GatedTarget()

    def replayer() -> Replayer:
        return Replayer(
            platform.app.extensions["agegate.engine"],
            (gated,),
            batch_size=10,
            lease=timedelta(seconds=30),
            actor="test",
        )

    results: list[Any] = []
    first = threading.Thread(target=lambda: results.append(replayer().replay(case_id, since)))
    first.start()
    try:
        assert gated.entered.wait(10)
        second = replayer().replay(case_id, since)
    finally:
        gated.go_on.set()
        first.join(10)
    assert second.skipped is not None and "another replay is working on this case" in second.skipped
    assert second.targets == [] and not second.ok
    assert results[0].ok and results[0].targets[0].purged == 3
    # Once the first has finished, the case can be replayed again.
    assert replayer().replay(case_id, since).ok


class InterruptingTarget(BrokenTarget):
    """Ctrl-C arrives during the second batch."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = False
        self.batches = 0

    def purge_batch(self, account_id: str, limit: int, context: PurgeContext) -> int:
        self.batches += 1
        if self.batches == 2:
            raise KeyboardInterrupt
        return super().purge_batch(account_id, 1, context)


def test_an_interrupted_replay_records_what_it_purged_and_a_rerun_finishes(
    platform: Platform,
) -> None:
    since = utcnow() - timedelta(minutes=1)
    case_id = platform.complete(CHILD)
    interrupting = InterruptingTarget()
    platform.app.extensions["agegate.targets"] = (interrupting,)

    stopped = platform.replay("--since", since.isoformat())
    assert stopped.exit_code == 130
    assert "interrupted" in stopped.output and "run the same command again" in stopped.output
    (event,) = replayed_events(platform.app)
    assert event.data["interrupted"] is True
    assert event.data["targets"][0]["purged"] == 1
    assert interrupting.items[CHILD] == 2

    rerun = platform.replay("--since", since.isoformat())
    assert rerun.exit_code == 0, rerun.output
    assert "archive memory: found 2, purged 2, remaining 0" in rerun.output
    with platform.app.app_context(), db.new_session() as s:
        case = s.get(Case, uuid.UUID(case_id))
        assert case is not None and case.lease_owner is None


class ServiceTarget(BrokenTarget):
    """Like kind http: the service's answer to the deletion is the count; it cannot be asked."""

    name, kind = "provider", "http"
    counts_when_purged = True


def test_targets_that_cannot_be_recounted_are_reported_not_checked(platform: Platform) -> None:
    since = utcnow() - timedelta(minutes=1)
    platform.complete(CHILD)
    platform.restore(CHILD)
    sql, _media = platform.app.extensions["agegate.targets"]
    provider = ServiceTarget()
    # The media target was removed from the targets file since; a service target was added.
    platform.app.extensions["agegate.targets"] = (sql, provider)

    result = platform.replay("--since", since.isoformat())
    assert result.exit_code == 0, result.output
    assert "platform-db sql: found 30, purged 30, remaining 0" in result.output
    assert "provider http: not checked (its deletion answer was the proof" in result.output
    assert "media files: not checked (no longer in the targets file)" in result.output
    assert provider.items[CHILD] == 3  # nothing was sent to the service
    assert platform.files(CHILD) == CHILD_FILES

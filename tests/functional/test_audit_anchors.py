"""Receipts anchor the audit chain: a chain cut back, rewound or emptied fails `agegate
audit verify`, which names the first anchor it no longer holds, also when the receipts in
agegate's own database are gone and only the platform's copies are left."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from agegate.audit import service as audit
from agegate.audit.models import GENESIS_HASH, AuditEvent, AuditHead
from agegate.cli import cli
from agegate.extensions import db
from agegate.remediation.models import Receipt
from agegate.remediation.setup import make_worker
from tests.functional.test_remediation_engine import MemoryTarget

ACCOUNTS = ("acct-a", "acct-b", "acct-c")


@dataclass(frozen=True)
class Issued:
    case_id: str
    seq: int
    hash: str


@dataclass
class Platform:
    app: Flask
    folder: Path  # the platform's own copies of its receipts
    receipts: list[Issued]
    snapshot: list[dict[str, Any]]  # the audit events as they were before the second case

    def verify(self, *args: str) -> Result:
        return self.app.test_cli_runner().invoke(cli, ["audit", "verify", *args])


@pytest.fixture
def platform(
    app_factory: Callable[..., Flask], make_key: Callable[..., dict[str, str]], tmp_path: Path
) -> Platform:
    """Three completed cases, one after another, with their receipts kept in a folder, and
    more audit events after the last one."""
    app = app_factory()
    app.extensions["agegate.targets"] = (
        MemoryTarget("uploads", {a: {f"gen-{i}" for i in range(3)} for a in ACCOUNTS}),
    )
    headers = make_key("flags:write", "cases:read")
    client, worker = app.test_client(), make_worker(app)
    folder = tmp_path / "kept-receipts"
    folder.mkdir()
    receipts: list[Issued] = []
    snapshot: list[dict[str, Any]] = []
    for account in ACCOUNTS:
        if account == "acct-b":
            with app.app_context(), db.new_session() as s:
                snapshot = [dict(r) for r in s.execute(select(AuditEvent.__table__)).mappings()]
        case_id = client.post(
            f"/v1/accounts/{account}/flags",
            json={"reason": "other", "confidence": "confirmed"},
            headers=headers,
        ).get_json()["case"]["id"]
        deadline = time.monotonic() + 10
        while client.get(f"/v1/cases/{case_id}/receipt", headers=headers).status_code != 200:
            assert time.monotonic() < deadline, "the case did not complete"
            worker.run_once()
        document = client.get(f"/v1/cases/{case_id}/receipt", headers=headers).get_json()
        (folder / f"{case_id}.json").write_text(json.dumps(document))
        anchor = document["receipt"]["audit_anchor"]
        receipts.append(Issued(case_id, anchor["seq"], anchor["hash"]))
    make_key("cases:read")  # the chain goes on after the last receipt
    return Platform(app, folder, receipts, snapshot)


def tamper(app: Flask, change: Callable[[Session], None]) -> None:
    """What an intruder with the database's rights does: guards off, then the change."""
    with app.app_context(), db.new_session() as s:
        if s.get_bind().dialect.name == "postgresql":
            s.execute(text("SET LOCAL session_replication_role = replica"))  # triggers off
        else:  # each SQLite test has a database file of its own
            s.execute(text("DROP TRIGGER IF EXISTS audit_events_no_update"))
            s.execute(text("DROP TRIGGER IF EXISTS audit_events_no_delete"))
        change(s)
        s.commit()


def cut_after(seq: int) -> Callable[[Session], None]:
    """Delete every event after `seq` and put the head back to match: the chain verifies."""

    def change(s: Session) -> None:
        s.execute(delete(AuditEvent).where(AuditEvent.seq > seq))
        last = s.scalar(select(AuditEvent.hash).where(AuditEvent.seq == seq)) or GENESIS_HASH
        s.execute(update(AuditHead).values(last_seq=seq, last_hash=last))

    return change


def test_each_receipt_anchors_its_case_completion(platform: Platform) -> None:
    with platform.app.app_context(), db.new_session() as s:
        for issued in platform.receipts:
            event = s.get(AuditEvent, issued.seq)
            assert event is not None and event.hash == issued.hash
            assert (event.event, event.subject_id) == ("case.completed", issued.case_id)
    result = platform.verify("--receipts", str(platform.folder))
    assert result.exit_code == 0, result.output
    assert "6 receipt anchor(s) found in it" in result.output  # 3 in the database, 3 in the folder
    assert "3 file(s) read" in result.output


def test_the_audit_tables_cannot_be_emptied(platform: Platform) -> None:
    with platform.app.app_context(), db.new_session() as s:
        if s.get_bind().dialect.name == "postgresql":
            statements = ["TRUNCATE audit_events", "TRUNCATE audit_head"]
        else:  # SQLite has no TRUNCATE; an unconditional DELETE fires the row triggers
            statements = ["DELETE FROM audit_events"]
        for statement in statements:
            with pytest.raises(DBAPIError, match="append-only"):
                s.execute(text(statement))
            s.rollback()
        assert s.scalar(select(AuditHead.last_seq)) == s.scalar(
            select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1)
        )


def test_a_cut_tail_with_its_head_reset_fails(platform: Platform) -> None:
    _, second, _ = platform.receipts
    tamper(platform.app, cut_after(second.seq - 1))
    with platform.app.app_context(), db.new_session() as s:
        assert audit.verify(s).ok  # the chain alone looks intact: only anchors tell
    result = platform.verify()
    assert result.exit_code == 1
    assert f"BROKEN at event {second.seq}: event {second.seq}, anchored by the receipt " in (
        result.output
    )
    assert second.case_id in result.output and f"ends at event {second.seq - 1}" in result.output


def test_an_emptied_chain_fails_at_the_first_anchor(platform: Platform) -> None:
    first = platform.receipts[0]
    tamper(platform.app, cut_after(0))
    result = platform.verify()
    assert result.exit_code == 1
    assert f"BROKEN at event {first.seq}" in result.output and first.case_id in result.output


def test_a_rewound_chain_that_went_on_fails(platform: Platform) -> None:
    """The tables put back as they were before the second case, and the service carrying
    on: the second receipt's event number exists again, with another event in it."""
    _, second, _ = platform.receipts

    def rewind(s: Session) -> None:
        s.execute(delete(AuditEvent))
        s.execute(insert(AuditEvent.__table__), platform.snapshot)
        last = max(platform.snapshot, key=lambda row: row["seq"])
        s.execute(update(AuditHead).values(last_seq=last["seq"], last_hash=last["hash"]))

    tamper(platform.app, rewind)
    with platform.app.app_context(), db.new_session() as s:
        for i in range(20):
            audit.record(
                s, actor="test", event="thing.happened", subject_type="t", subject_id=str(i)
            )
        s.commit()
        assert audit.verify(s).ok
    result = platform.verify()
    assert result.exit_code == 1
    assert f"BROKEN at event {second.seq}: the receipt of case {second.case_id}" in result.output
    assert "the log was rewritten" in result.output


def test_receipts_kept_elsewhere_catch_what_deleted_receipts_hide(platform: Platform) -> None:
    _, second, third = platform.receipts

    def cut_and_hide(s: Session) -> None:
        cut_after(second.seq - 1)(s)
        s.execute(delete(Receipt).where(Receipt.audit_seq >= second.seq))

    tamper(platform.app, cut_and_hide)
    alone = platform.verify()
    assert alone.exit_code == 0  # agegate's own database no longer knows better
    kept = platform.verify("--receipts", str(platform.folder))
    assert kept.exit_code == 1
    assert f"BROKEN at event {second.seq}" in kept.output
    assert str(platform.folder / f"{second.case_id}.json") in kept.output
    assert third.case_id not in kept.output  # the first missing anchor is named


def test_a_kept_file_that_is_not_a_signed_receipt_fails(platform: Platform) -> None:
    first = platform.receipts[0]
    path = platform.folder / f"{first.case_id}.json"
    document = json.loads(path.read_text())
    document["receipt"]["audit_anchor"]["seq"] += 1  # a forged anchor breaks the signature
    path.write_text(json.dumps(document))
    (platform.folder / "notes.json").write_text("not json")
    result = platform.verify("--receipts", str(platform.folder))
    assert result.exit_code == 1
    assert f"{path}: not a receipt signed by a key agegate published" in result.output
    assert "notes.json: not readable as JSON" in result.output
    empty = platform.folder / "empty"
    empty.mkdir()
    nothing = platform.verify("--receipts", str(empty))
    assert nothing.exit_code == 1 and "no receipts (*.json files) in it" in nothing.output


def test_receipts_issued_before_anchors_are_counted_not_failed(platform: Platform) -> None:
    first = platform.receipts[0]
    with platform.app.app_context(), db.new_session() as s:  # as migration 0011 leaves them
        s.execute(
            update(Receipt)
            .where(Receipt.audit_seq == first.seq)
            .values(audit_seq=None, audit_hash=None)
        )
        s.commit()
    result = platform.verify()
    assert result.exit_code == 0
    assert "2 receipt anchor(s) found in it (1 receipt(s) predate anchors)" in result.output

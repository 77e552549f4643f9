"""The audit log is a hash chain: appends link, the database refuses edits, verify finds tampering."""

from __future__ import annotations

import itertools

import pytest
from flask import Flask
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from agegate.audit import service as audit
from agegate.audit.models import GENESIS_HASH, AuditEvent


def _append(session: Session, n: int) -> None:
    for i in range(n):
        audit.record(
            session,
            actor="test",
            event="thing.happened",
            subject_type="thing",
            subject_id=f"t{i}",
            data={"i": i, "nested": {"b": [1, 2], "a": "x"}},
        )
    session.commit()


def _drop_append_only_guard(session: Session) -> None:
    """What an attacker with database rights would do first."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("DROP TRIGGER audit_events_append_only ON audit_events"))
    else:
        session.execute(text("DROP TRIGGER audit_events_no_update"))
        session.execute(text("DROP TRIGGER audit_events_no_delete"))


def test_events_link_to_the_one_before(session: Session) -> None:
    before = audit.verify(session).events  # start-up may have recorded a key already
    _append(session, 3)
    events = session.query(AuditEvent).order_by(AuditEvent.seq).all()
    assert [e.seq for e in events] == list(range(1, before + 4))
    assert events[0].prev_hash == GENESIS_HASH
    assert all(later.prev_hash == earlier.hash for earlier, later in itertools.pairwise(events))
    result = audit.verify(session)
    assert result.ok and result.events == before + 3


def test_the_database_refuses_edits_and_deletions(session: Session) -> None:
    _append(session, 2)
    for statement in (
        "UPDATE audit_events SET actor = 'mallory' WHERE seq = 1",
        "DELETE FROM audit_events WHERE seq = 2",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            session.execute(text(statement))
        session.rollback()


@pytest.mark.parametrize(
    ("tamper", "broken_at"),
    [
        ("UPDATE audit_events SET actor = 'mallory' WHERE seq = 3", 3),
        ("DELETE FROM audit_events WHERE seq = 2", 2),
        ("UPDATE audit_events SET prev_hash = hash WHERE seq = 4", 4),
        ("DELETE FROM audit_events WHERE seq = 5", 5),
    ],
)
def test_verify_reports_the_first_broken_link(
    session: Session, tamper: str, broken_at: int
) -> None:
    _append(session, 5)
    # DDL is transactional on both databases: the tampering is seen by verify inside this
    # transaction and rolled back afterwards, so the shared PostgreSQL schema keeps its guard.
    _drop_append_only_guard(session)
    session.execute(text(tamper))
    result = audit.verify(session)
    session.rollback()
    assert not result.ok
    assert result.broken_at == broken_at
    assert result.problem
    assert audit.verify(session).ok


def test_concurrent_appends_keep_one_chain(app: Flask) -> None:
    import threading

    from agegate.extensions import db

    def worker(n: int) -> None:
        with app.app_context(), db.new_session() as s:
            for i in range(5):
                audit.record(
                    s,
                    actor=f"w{n}",
                    event="thing.happened",
                    subject_type="thing",
                    subject_id=str(i),
                )
                s.commit()

    with app.app_context(), db.new_session() as s:
        before = audit.verify(s).events
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with app.app_context(), db.new_session() as s:
        result = audit.verify(s)
    assert result.ok and result.events == before + 20

"""Append audit events to the hash chain, and verify the chain."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Generator, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from agegate.audit.models import GENESIS_HASH, AuditEvent, AuditHead
from agegate.db import utcnow


def record(
    session: Session,
    *,
    actor: str,
    event: str,
    subject_type: str,
    subject_id: str,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event (named `subject.action`) in the caller's transaction."""
    # Taking the head row first locks it until commit: appends are serialised, so each new
    # event sees the true end of the chain (PostgreSQL row lock; SQLite's write lock).
    seq, prev_hash = session.execute(
        update(AuditHead)
        .where(AuditHead.id == 1)
        .values(last_seq=AuditHead.last_seq + 1)
        .returning(AuditHead.last_seq, AuditHead.last_hash)
    ).one()
    entry = AuditEvent(
        seq=seq,
        occurred_at=utcnow(),
        actor=actor,
        event=event,
        subject_type=subject_type,
        subject_id=subject_id,
        data=data or {},
        prev_hash=prev_hash,
    )
    entry.hash = event_hash(entry)
    session.add(entry)
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(last_hash=entry.hash))
    return entry


def event_hash(entry: AuditEvent) -> str:
    """SHA-256 over the event's canonical JSON, which includes the previous event's hash."""
    content = {
        "seq": entry.seq,
        "occurred_at": entry.occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": entry.actor,
        "event": entry.event,
        "subject_type": entry.subject_type,
        "subject_id": entry.subject_id,
        "data": entry.data,
        "prev_hash": entry.prev_hash,
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    events: int
    broken_at: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def verify(session: Session) -> VerifyResult:
    """Walk the chain in order; report the first event whose link or content does not hold."""
    with closing(_events(session)) as events:
        return _walk(session, events)


def _walk(session: Session, events: Iterator[AuditEvent]) -> VerifyResult:
    expected_prev, expected_seq, count = GENESIS_HASH, 1, 0
    for entry in events:
        if entry.seq != expected_seq:
            return VerifyResult(count, expected_seq, f"event {expected_seq} is missing")
        if entry.prev_hash != expected_prev:
            return VerifyResult(
                count, entry.seq, f"event {entry.seq} does not link to event {entry.seq - 1}"
            )
        if event_hash(entry) != entry.hash:
            return VerifyResult(
                count, entry.seq, f"event {entry.seq} was changed after it was written"
            )
        expected_prev, expected_seq, count = entry.hash, entry.seq + 1, count + 1
    head = session.get(AuditHead, 1)
    if head is None or head.last_seq != count or head.last_hash != expected_prev:
        return VerifyResult(
            count, count + 1, f"the chain ends at event {count} but its head records more events"
        )
    return VerifyResult(count)


def _events(session: Session) -> Generator[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=1000)
    result = session.scalars(query)
    try:
        for entry in result:
            yield entry
            session.expunge(entry)
    finally:
        # verify() may stop at a broken link: release PostgreSQL's server-side cursor now.
        result.close()

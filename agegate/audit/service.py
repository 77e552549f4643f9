"""Append audit events to the hash chain, and verify the chain."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Generator, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
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


@dataclass(frozen=True, order=True)
class Anchor:
    """A point of the chain recorded outside it: event `seq` had hash `hash`. Receipts
    carry one each, so cutting the chain's tail and resetting its head is found out."""

    seq: int
    hash: str
    source: str = field(compare=False, default="")  # who recorded it, for the report


def head(session: Session) -> Anchor:
    """The end of the chain as this transaction sees it (its own appends included)."""
    seq, last_hash = session.execute(
        select(AuditHead.last_seq, AuditHead.last_hash).where(AuditHead.id == 1)
    ).one()
    return Anchor(seq, last_hash)


@dataclass(frozen=True)
class VerifyResult:
    events: int
    broken_at: int | None = None
    problem: str | None = None
    anchors: int = 0  # anchors found in the chain

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def verify(session: Session, anchors: Iterable[Anchor] = ()) -> VerifyResult:
    """Walk the chain in order; report the first event whose link or content does not hold,
    or that an anchor (given in `seq` order) names and the chain no longer holds."""
    with closing(_events(session)) as events:
        return _walk(session, events, iter(anchors))


def _walk(
    session: Session, events: Iterator[AuditEvent], anchors: Iterator[Anchor]
) -> VerifyResult:
    expected_prev, expected_seq, count, matched = GENESIS_HASH, 1, 0, 0
    anchor = next(anchors, None)
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
        while anchor is not None and anchor.seq <= entry.seq:
            if anchor.seq != entry.seq or anchor.hash != entry.hash:
                return VerifyResult(
                    count,
                    anchor.seq,
                    f"{anchor.source} anchors event {anchor.seq}, and the chain does not hold "
                    "that event: the log was rewritten",
                )
            matched, anchor = matched + 1, next(anchors, None)
        expected_prev, expected_seq, count = entry.hash, entry.seq + 1, count + 1
    if anchor is not None:  # before the head: a cut tail comes with a head put back to match
        return VerifyResult(
            count,
            anchor.seq,
            f"event {anchor.seq}, anchored by {anchor.source}, is missing: the chain ends at "
            f"event {count}",
        )
    head = session.get(AuditHead, 1)
    if head is None or head.last_seq != count or head.last_hash != expected_prev:
        return VerifyResult(
            count, count + 1, f"the chain ends at event {count} but its head records more events"
        )
    return VerifyResult(count, anchors=matched)


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

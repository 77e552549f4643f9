"""Cases: open one per account (flags join it), read them, and steer them."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from agegate.audit import service as audit
from agegate.db import utcnow
from agegate.errors import ConflictError, NotFoundError, ValidationError
from agegate.flags import service as flags
from agegate.flags.models import Confidence, Flag, FlagReason
from agegate.remediation.models import (
    CLOSED_STATES,
    DISMISSABLE_STATES,
    Case,
    CaseEvent,
    CaseState,
    CaseTarget,
    Receipt,
    ReceiptKey,
    StepState,
)


@dataclass(frozen=True)
class Intake:
    flag: Flag
    case: Case
    opened: bool  # True: this flag opened the case; False: it joined an open one


def flag_account(
    session: Session,
    *,
    account_id: str,
    reason: FlagReason,
    confidence: Confidence,
    evidence: str | None,
    flagged_by: str,
    now: datetime,
    age_check_id: uuid.UUID | None = None,
) -> Intake:
    """Record a flag and open a case for the account, or join the one that is open."""
    case, opened = _open_or_join(session, account_id, confidence, flagged_by, now)
    flag = flags.record_flag(
        session,
        account_id=account_id,
        reason=reason,
        confidence=confidence,
        evidence=evidence,
        flagged_by=flagged_by,
        now=now,
        age_check_id=age_check_id,
    )
    flag.case_id = case.id
    if not opened:
        record_event(
            session, case, "flag.joined", flagged_by, now, flag_id=str(flag.id), reason=reason.value
        )
        if confidence is Confidence.CONFIRMED and case.confidence is Confidence.SUSPECTED:
            case.confidence = Confidence.CONFIRMED
            record_event(session, case, "case.confirmed", flagged_by, now, flag_id=str(flag.id))
    session.flush()
    return Intake(flag, case, opened)


def _open_or_join(
    session: Session, account_id: str, confidence: Confidence, actor: str, now: datetime
) -> tuple[Case, bool]:
    existing = open_case(session, account_id)
    if existing is not None:
        return existing, False
    case = Case(
        id=uuid.uuid4(),
        account_id=account_id,
        state=CaseState.OPEN,
        confidence=confidence,
        opened_at=now,
        next_run_at=now,  # contain at once
    )
    try:
        with session.begin_nested():
            session.add(case)
            session.flush()
    except IntegrityError:
        # Another request opened the account's case a moment ago: join it.
        existing = open_case(session, account_id)
        if existing is None:
            raise
        return existing, False
    record_event(session, case, "case.opened", actor, now, confidence=confidence.value)
    return case, True


def open_case(session: Session, account_id: str) -> Case | None:
    return session.scalar(
        select(Case).where(Case.account_id == account_id, Case.state.not_in(CLOSED_STATES))
    )


def record_event(
    session: Session, case: Case, event: str, actor: str, at: datetime, **data: Any
) -> None:
    """Add to the case's timeline and to the audit log."""
    session.add(CaseEvent(case_id=case.id, at=at, event=event, actor=actor, data=data))
    audit.record(
        session,
        actor=actor,
        event=event,
        subject_type="case",
        subject_id=str(case.id),
        data={"account_id": case.account_id, "state": case.state.value, **data},
    )


def get_case(session: Session, case_id: uuid.UUID) -> Case:
    case = session.get(Case, case_id)
    if case is None:
        raise NotFoundError(f"no case {case_id}", code="case_not_found")
    return case


def timeline(session: Session, case: Case) -> Sequence[CaseEvent]:
    return session.scalars(
        select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id)
    ).all()


def list_cases(
    session: Session,
    *,
    state: CaseState | None,
    account_id: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[Sequence[Case], str | None]:
    """Newest first, `limit` at a time; the cursor is opaque to clients."""
    query = select(Case).order_by(Case.opened_at.desc(), Case.id.desc()).limit(limit + 1)
    if state is not None:
        query = query.where(Case.state == state)
    if account_id is not None:
        query = query.where(Case.account_id == account_id)
    if cursor is not None:
        opened_at, case_id = _decode_cursor(cursor)
        query = query.where(
            or_(Case.opened_at < opened_at, and_(Case.opened_at == opened_at, Case.id < case_id))
        )
    rows = session.scalars(query).all()
    more = len(rows) > limit
    page = rows[:limit]
    return page, (_encode_cursor(page[-1]) if more else None)


def dismiss(session: Session, case: Case, *, reason: str, actor: str, now: datetime) -> Case:
    """Close a case without purging (e.g. an adult was verified); refused once purging began."""
    if case.state not in DISMISSABLE_STATES:
        raise ConflictError(
            f"the case is {case.state.value}: it can no longer be dismissed",
            code="case_not_dismissable",
        )
    # The engine runs the release hooks (e.g. unsuspend the account) at once.
    case.state, case.closed_at, case.next_run_at = CaseState.DISMISSED, now, now
    record_event(session, case, "case.dismissed", actor, now, reason=reason)
    return case


def expedite(
    session: Session, case: Case, *, reason: str | None, actor: str, now: datetime
) -> Case:
    """End the appeal window now."""
    if case.state not in DISMISSABLE_STATES:
        raise ConflictError(
            f"the case is {case.state.value}: there is no appeal window to end",
            code="case_not_expeditable",
        )
    case.purge_after = now
    if case.state is CaseState.AWAITING_PURGE:
        case.next_run_at = now
    record_event(session, case, "case.expedited", actor, now, reason=reason)
    return case


def retry(session: Session, case: Case, *, actor: str, now: datetime) -> Case:
    """Resume a failed case where it stopped: failed targets get fresh attempts."""
    if case.state is not CaseState.FAILED:
        raise ConflictError(f"the case is {case.state.value}, not failed", code="case_not_failed")
    steps = session.scalars(select(CaseTarget).where(CaseTarget.case_id == case.id)).all()
    for step in steps:
        if step.state is StepState.FAILED:
            step.state, step.attempts, step.next_attempt_at = StepState.PURGING, 0, None
    # Where it failed: containment, release hooks, purging or verifying run again. (Cases
    # that failed before the state was kept resume purging, or its start.)
    resume = case.failed_state or (CaseState.PURGING if steps else CaseState.AWAITING_PURGE)
    case.state, case.failed_state, case.step_failures = resume, None, 0
    case.last_error, case.next_run_at = None, now
    record_event(session, case, "case.retried", actor, now)
    return case


def _encode_cursor(case: Case) -> str:
    raw = json.dumps({"opened_at": case.opened_at.isoformat(), "id": str(case.id)})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(data["opened_at"]), uuid.UUID(data["id"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise ValidationError(
            "the cursor is not one this API gave out", errors={"cursor": ["invalid cursor"]}
        ) from None


def targets_of(session: Session, case: Case) -> Sequence[CaseTarget]:
    return session.scalars(
        select(CaseTarget).where(CaseTarget.case_id == case.id).order_by(CaseTarget.id)
    ).all()


def receipt_of(session: Session, case: Case) -> dict[str, Any]:
    """The signed receipt document: {receipt, signature, kid}."""
    stored = session.get(Receipt, case.id)
    if case.state is not CaseState.COMPLETED or stored is None:
        raise ConflictError(
            f"the case is {case.state.value}: a receipt exists once it is completed",
            code="case_not_completed",
        )
    return {"receipt": stored.body, "signature": stored.signature, "kid": stored.kid}


def receipt_keys(session: Session) -> list[tuple[str, str]]:
    """Every registered receipt public key as (kid, x), oldest first."""
    rows = session.execute(select(ReceiptKey.kid, ReceiptKey.x).order_by(ReceiptKey.first_used_at))
    return [(row.kid, row.x) for row in rows]


def renew_lease(session: Session, case_id: uuid.UUID, owner: str, lease: timedelta) -> bool:
    """Extend `owner`'s lease on a case and commit; False if someone else holds it now."""
    result = session.execute(
        update(Case)
        .where(Case.id == case_id, Case.lease_owner == owner)
        .values(lease_expires_at=utcnow() + lease)
    )
    session.commit()
    renewed: int = result.rowcount  # type: ignore[attr-defined]
    return renewed == 1

"""Legal holds: legal exempts an account's data in some (or all) targets until released."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from agegate.audit import service as audit
from agegate.errors import ConflictError, NotFoundError, ValidationError
from agegate.remediation import service
from agegate.remediation.models import CaseState, CaseTarget, LegalHold, StepState


def place(
    session: Session,
    *,
    account_id: str,
    targets: list[str] | None,
    reason: str,
    known_targets: Collection[str],
    actor: str,
    now: datetime,
) -> LegalHold:
    """Hold the account's data in `targets` (None: every target); purging skips them."""
    unknown = sorted(set(targets or []) - set(known_targets))
    if unknown:
        raise ValidationError(
            "unknown purge targets",
            errors={"targets": [f"{len(unknown)} name(s) that no purge target has"]},
        )
    hold = LegalHold(
        id=uuid.uuid4(),
        account_id=account_id,
        targets=targets,
        reason=reason,
        placed_by=actor,
        created_at=now,
    )
    session.add(hold)
    audit.record(
        session,
        actor=actor,
        event="legal_hold.placed",
        subject_type="account",
        subject_id=account_id,
        data={"hold_id": str(hold.id), "targets": targets, "reason": reason},
    )
    case = service.open_case(session, account_id)
    if case is not None:
        for step in _steps(session, case.id):
            if step.state is StepState.PURGING and (targets is None or step.name in targets):
                # Binds from this commit: a worker purging it stops after the batch in
                # flight, and records what that batch took too (workflow._held_now).
                step.state = StepState.HELD
                if step.held_after is None:
                    step.held_after = step.purged
        service.record_event(
            session, case, "case.hold_placed", actor, now, hold_id=str(hold.id), targets=targets
        )
    session.flush()
    return hold


def release(session: Session, hold_id: uuid.UUID, *, actor: str, now: datetime) -> LegalHold:
    """Release a hold; the account's case resumes purging what no other hold still covers."""
    hold = session.get(LegalHold, hold_id)
    if hold is None:
        raise NotFoundError(f"no legal hold {hold_id}", code="legal_hold_not_found")
    if hold.released_at is not None:
        raise ConflictError("the hold was already released", code="legal_hold_released")
    hold.released_at, hold.released_by = now, actor
    audit.record(
        session,
        actor=actor,
        event="legal_hold.released",
        subject_type="account",
        subject_id=hold.account_id,
        data={"hold_id": str(hold.id)},
    )
    case = service.open_case(session, hold.account_id)
    if case is not None:
        still_held = held_targets(session, hold.account_id)
        resumed = False
        for step in _steps(session, case.id):
            if (
                step.state is StepState.HELD
                and step.name not in still_held
                and "*" not in still_held
            ):
                step.state, resumed = StepState.PURGING, True
        service.record_event(session, case, "case.hold_released", actor, now, hold_id=str(hold.id))
        if resumed and case.state in (CaseState.ON_HOLD, CaseState.PURGING, CaseState.VERIFYING):
            case.state, case.next_run_at = CaseState.PURGING, now
    session.flush()
    return hold


def held_targets(session: Session, account_id: str) -> set[str]:
    """Target names under an active hold; `*` when a hold covers every target."""
    holds = session.scalars(
        select(LegalHold).where(LegalHold.account_id == account_id, LegalHold.released_at.is_(None))
    ).all()
    names: set[str] = set()
    for hold in holds:
        names |= {"*"} if hold.targets is None else set(hold.targets)
    return names


def _steps(session: Session, case_id: uuid.UUID) -> list[CaseTarget]:
    return list(session.scalars(select(CaseTarget).where(CaseTarget.case_id == case_id)))

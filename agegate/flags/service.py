"""Record flags. The remediation workflow (cases) builds on these rows."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.orm import Session

from agegate.audit import service as audit
from agegate.flags.models import Confidence, Flag, FlagReason


def record_flag(
    session: Session,
    *,
    account_id: str,
    reason: FlagReason,
    confidence: Confidence,
    evidence: str | None,
    flagged_by: str,
    now: datetime,
    age_check_id: uuid.UUID | None = None,
) -> Flag:
    """Record a flag on an account (an audit event; evidence is a reference, not content)."""
    flag = Flag(
        account_id=account_id,
        reason=reason,
        confidence=confidence,
        evidence=evidence,
        age_check_id=age_check_id,
        flagged_by=flagged_by,
        created_at=now,
    )
    session.add(flag)
    session.flush()
    audit.record(
        session,
        actor=flagged_by,
        event="flag.created",
        subject_type="account",
        subject_id=account_id,
        data={"flag_id": str(flag.id), "reason": reason.value, "confidence": confidence.value},
    )
    return flag

"""What is kept of an age check (DESIGN.md §2), and nothing more: never a birth date."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from agegate.db import Base, enum_column


class Outcome(enum.StrEnum):
    ALLOWED = "allowed"
    DENIED = "denied"


class Reason(enum.StrEnum):
    MEETS_MINIMUM_AGE = "meets_minimum_age"
    BELOW_MINIMUM_AGE = "below_minimum_age"
    PRIOR_UNDERAGE_DECLARATION = "prior_underage_declaration"


class AgeCheck(Base):
    __tablename__ = "age_checks"
    __table_args__ = (
        # The lockout fallback asks: any denial for this session (or account) lately?
        Index("ix_age_checks_session_hash_checked_at", "session_hash", "checked_at"),
        Index("ix_age_checks_account_id_checked_at", "account_id", "checked_at"),
        Index("ix_age_checks_outcome_checked_at", "outcome", "checked_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    outcome: Mapped[Outcome] = mapped_column(enum_column(Outcome))
    reason: Mapped[Reason] = mapped_column(enum_column(Reason))
    jurisdiction_code: Mapped[str] = mapped_column(String(16))
    rule_id: Mapped[int | None]
    rule_version: Mapped[int | None]
    minimum_age: Mapped[int] = mapped_column(Integer)
    # Whole years, capped at 21: enough to audit the decision, too little to identify anyone.
    age_capped: Mapped[int] = mapped_column(Integer)
    checked_at: Mapped[datetime]
    # HMAC-SHA256 of the session id under AGEGATE_SECRET_KEY: linkable, not reversible.
    session_hash: Mapped[str | None] = mapped_column(String(64))
    account_id: Mapped[str | None] = mapped_column(String(128))

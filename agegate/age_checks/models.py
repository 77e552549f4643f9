"""What is kept of an age check (docs/age-checks.md), and nothing more: never a birth date."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from agegate.db import Base, enum_column


class Outcome(enum.StrEnum):
    ALLOWED = "allowed"
    DENIED = "denied"


class Reason(enum.StrEnum):
    MEETS_MINIMUM_AGE = "meets_minimum_age"
    BELOW_MINIMUM_AGE = "below_minimum_age"
    PRIOR_UNDERAGE_DECLARATION = "prior_underage_declaration"


# Written as SQL, not as a bound parameter: only then can PostgreSQL use the partial index
# below in a prepared (generic) plan.
DENIED = text("outcome = 'denied'")
NAMES_ACCOUNT = text("account_id IS NOT NULL")
DENIED_SESSIONS = text("outcome = 'denied' AND session_hash IS NOT NULL")


class AgeCheck(Base):
    __tablename__ = "age_checks"
    # Partial indexes: most checks are allowed and name no account, and each of their rows
    # would otherwise update every index (signups are this table's whole write load).
    __table_args__ = (
        # The lockout poll asks for the denials since a moment.
        Index(
            "ix_age_checks_denied_checked_at",
            "checked_at",
            postgresql_where=DENIED,
            sqlite_where=DENIED,
        ),
        # A check that cannot rely on its process's memory asks for its session's denials.
        # (Only rows with a session: the poll, which asks for all denials, cannot take it.)
        Index(
            "ix_age_checks_denied_session_hash",
            "session_hash",
            postgresql_where=DENIED_SESSIONS,
            sqlite_where=DENIED_SESSIONS,
        ),
        # An account's checks, for whoever must find them.
        Index(
            "ix_age_checks_account_checked_at",
            "account_id",
            "checked_at",
            postgresql_where=NAMES_ACCOUNT,
            sqlite_where=NAMES_ACCOUNT,
        ),
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

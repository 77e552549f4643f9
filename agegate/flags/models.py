"""Flags: trust and safety's (or an age check's) statement that an account may be a child's."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from agegate.db import Base, enum_column


class FlagReason(enum.StrEnum):
    SELF_DECLARED_UNDERAGE = "self_declared_underage"
    USER_REPORT = "user_report"
    CLASSIFIER = "classifier"
    PARENTAL_REQUEST = "parental_request"
    OTHER = "other"


class Confidence(enum.StrEnum):
    SUSPECTED = "suspected"
    CONFIRMED = "confirmed"


class Flag(Base):
    __tablename__ = "flags"
    __table_args__ = (Index("ix_flags_account_id_created_at", "account_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[str] = mapped_column(String(128))
    reason: Mapped[FlagReason] = mapped_column(enum_column(FlagReason))
    confidence: Mapped[Confidence] = mapped_column(enum_column(Confidence))
    # A reference to evidence held elsewhere (a ticket, a report id), never the content;
    # free text, never parsed.
    evidence: Mapped[str | None] = mapped_column(Text)
    # The age check whose denial raised the flag: set by the check itself, never from input.
    age_check_id: Mapped[uuid.UUID | None]
    flagged_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    # The remediation case the flag opened or joined.
    case_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("cases.id"))

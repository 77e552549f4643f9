"""Remediation cases: one per account at a time, with a timeline of everything that happened."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from agegate.db import Base, enum_column
from agegate.flags.models import Confidence


class CaseState(enum.StrEnum):
    OPEN = "open"
    CONTAINED = "contained"
    AWAITING_PURGE = "awaiting_purge"
    PURGING = "purging"
    VERIFYING = "verifying"
    ON_HOLD = "on_hold"
    COMPLETED = "completed"
    DISMISSED = "dismissed"
    FAILED = "failed"


CLOSED_STATES = frozenset({CaseState.COMPLETED, CaseState.DISMISSED})
# Dismissing is refused once any data may have been purged (DESIGN.md §3).
DISMISSABLE_STATES = frozenset({CaseState.OPEN, CaseState.CONTAINED, CaseState.AWAITING_PURGE})
_OPEN_PREDICATE = "state NOT IN ('completed', 'dismissed')"


class Case(Base):
    __tablename__ = "cases"
    __table_args__ = (
        # At most one open case per account, enforced by the database itself, so that
        # concurrent flags can only ever join one case.
        Index(
            "uq_cases_open_account_id",
            "account_id",
            unique=True,
            postgresql_where=text(_OPEN_PREDICATE),
            sqlite_where=text(_OPEN_PREDICATE),
        ),
        Index("ix_cases_state_opened_at", "state", "opened_at"),
        Index("ix_cases_account_id_opened_at", "account_id", "opened_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[str] = mapped_column(String(128))
    state: Mapped[CaseState] = mapped_column(enum_column(CaseState))
    confidence: Mapped[Confidence] = mapped_column(enum_column(Confidence))
    opened_at: Mapped[datetime]
    # When the appeal window ends and purging may start (set when the case is contained).
    purge_after: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]


class CaseEvent(Base):
    """One entry of a case's timeline (the audit log has the tamper-evident copy)."""

    __tablename__ = "case_events"
    __table_args__ = (Index("ix_case_events_case_id_id", "case_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id"))
    at: Mapped[datetime]
    event: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(200))
    data: Mapped[dict[str, Any]]


class IdempotencyRecord(Base):
    """The first answer to a request sent with an Idempotency-Key, replayed for repeats."""

    __tablename__ = "idempotency_records"

    key_name: Mapped[str] = mapped_column(String(64), primary_key=True)  # the API key's name
    idempotency_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[int]
    body: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]

"""Remediation cases: one per account at a time, with a timeline of everything that happened."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    or_,
    text,
)
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
# Dismissing is refused once any data may have been purged (docs/remediation.md, "Case states").
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
        Index("ix_cases_next_run_at", "next_run_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[str] = mapped_column(String(128))
    state: Mapped[CaseState] = mapped_column(enum_column(CaseState))
    confidence: Mapped[Confidence] = mapped_column(enum_column(Confidence))
    opened_at: Mapped[datetime]
    # When the appeal window ends and purging may start (set when the case is contained).
    purge_after: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    # The engine's bookkeeping: when to look at the case next (None: nothing to do until a
    # person or a hold release acts), and which worker holds it until when.
    next_run_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    # Steps that raised in a row (each is an attempt; the last fails the case), and the
    # state a failed case was in, which `retry` resumes.
    step_failures: Mapped[int] = mapped_column(default=0, server_default="0")
    failed_state: Mapped[CaseState | None] = mapped_column(enum_column(CaseState, checked=False))
    # Optimistic concurrency: an update made from a stale read fails instead of overwriting,
    # so a dismissal racing the start of purging cannot both win.
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012

    @classmethod
    def due(cls, now: datetime) -> tuple[ColumnElement[bool], ...]:
        """Cases a worker may claim at `now`: due, not finished, and not leased (or leased by a
        worker that stopped renewing). The claim query and the metrics share it."""
        return (
            cls.next_run_at <= now,
            cls.state != CaseState.COMPLETED,  # a dismissed case may owe its release hooks
            or_(cls.lease_expires_at.is_(None), cls.lease_expires_at < now),
        )


class StepState(enum.StrEnum):
    PURGING = "purging"
    DONE = "done"
    HELD = "held"
    FAILED = "failed"


class CaseTarget(Base):
    """One purge target's progress within a case: counts are recorded after every batch."""

    __tablename__ = "case_targets"
    __table_args__ = (UniqueConstraint("case_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id"))
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[StepState] = mapped_column(enum_column(StepState))
    found: Mapped[int] = mapped_column(default=0)
    purged: Mapped[int] = mapped_column(default=0)
    remaining: Mapped[int | None]
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None]
    # How many items the target had purged when a legal hold stopped it (None: never held).
    held_after: Mapped[int | None]


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


class LegalHold(Base):
    """Legal's order to keep an account's data in some targets (None: all) until released."""

    __tablename__ = "legal_holds"
    __table_args__ = (Index("ix_legal_holds_account_id", "account_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[str] = mapped_column(String(128))
    targets: Mapped[list[str] | None] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)
    placed_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    released_at: Mapped[datetime | None]
    released_by: Mapped[str | None] = mapped_column(String(200))


class Receipt(Base):
    """The signed deletion receipt of a completed case."""

    __tablename__ = "receipts"

    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    body: Mapped[dict[str, Any]]
    signature: Mapped[str] = mapped_column(Text)
    kid: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[datetime]
    # The audit head at issue (also in the signed body): `agegate audit verify` checks that
    # the chain still holds it. None for receipts issued before anchors existed.
    audit_seq: Mapped[int | None] = mapped_column(BigInteger, index=True)
    audit_hash: Mapped[str | None] = mapped_column(String(64))


class ReceiptKey(Base):
    """Every public key that has signed (or may sign) receipts: the JWKS lists them all, so
    receipts signed before a key rotation still verify."""

    __tablename__ = "receipt_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    x: Mapped[str] = mapped_column(String(64))  # base64url raw Ed25519 public key
    first_used_at: Mapped[datetime]

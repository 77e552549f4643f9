"""Jurisdiction rules: one row per version, never updated, never deleted."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import CheckConstraint, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from agegate.db import Base, enum_column

MIN_AGE_FLOOR = 13
MAX_AGE = 25
DEFAULT_CODE = "default"


class RuleStatus(enum.StrEnum):
    IN_FORCE = "in_force"
    PROPOSED = "proposed"
    SUSPENDED = "suspended"


class JurisdictionRule(Base):
    __tablename__ = "jurisdiction_rules"
    __table_args__ = (
        UniqueConstraint("code", "version"),
        CheckConstraint(f"minimum_age BETWEEN {MIN_AGE_FLOOR} AND {MAX_AGE}", name="minimum_age"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(16))  # indexed by the (code, version) key
    version: Mapped[int] = mapped_column(Integer)
    minimum_age: Mapped[int] = mapped_column(Integer)
    effective_from: Mapped[datetime]
    status: Mapped[RuleStatus] = mapped_column(enum_column(RuleStatus))
    citation: Mapped[str] = mapped_column(Text)
    notes: Mapped[str] = mapped_column(Text, default="")
    source_url: Mapped[str] = mapped_column(Text, default="")
    # A retirement version ends the code's rule from its effective instant and cancels every
    # earlier version, scheduled ones included (see rules.py).
    retired: Mapped[bool] = mapped_column(default=False)
    changed_by: Mapped[str] = mapped_column(String(200))
    changed_at: Mapped[datetime]
    change_reason: Mapped[str] = mapped_column(Text)

"""API keys: stored as a lookup id and a SHA-256 of the secret part, never the key itself."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from agegate.db import Base


class Scope(enum.StrEnum):
    AGE_CHECKS_WRITE = "age-checks:write"
    FLAGS_WRITE = "flags:write"
    CASES_READ = "cases:read"
    CASES_WRITE = "cases:write"
    JURISDICTIONS_READ = "jurisdictions:read"
    JURISDICTIONS_WRITE = "jurisdictions:write"
    LEGAL_HOLDS_WRITE = "legal-holds:write"


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        # A name is unique among live keys; a revoked key's name may be reused.
        Index(
            "uq_api_keys_live_name",
            "name",
            unique=True,
            postgresql_where=text("revoked_at IS NULL"),
            sqlite_where=text("revoked_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    lookup_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(200))
    revoked_at: Mapped[datetime | None]

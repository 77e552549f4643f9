"""Remediation cases (one open per account), their timelines, flags linked to cases, and
the first answers to idempotent requests.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
OPEN = sa.text("state NOT IN ('completed', 'dismissed')")
STATES = (
    "open",
    "contained",
    "awaiting_purge",
    "purging",
    "verifying",
    "on_hold",
    "completed",
    "dismissed",
    "failed",
)


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=32)


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("state", _enum("casestate", *STATES), nullable=False),
        sa.Column("confidence", _enum("confidence", "suspected", "confirmed"), nullable=False),
        sa.Column("opened_at", TIMESTAMP, nullable=False),
        sa.Column("purge_after", TIMESTAMP, nullable=True),
        sa.Column("closed_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
    )
    op.create_index("ix_cases_account_id_opened_at", "cases", ["account_id", "opened_at"])
    op.create_index("ix_cases_state_opened_at", "cases", ["state", "opened_at"])
    op.create_index(
        "uq_cases_open_account_id",
        "cases",
        ["account_id"],
        unique=True,
        postgresql_where=OPEN,
        sqlite_where=OPEN,
    )
    op.create_table(
        "case_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_case_events_case_id_cases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_events")),
    )
    op.create_index("ix_case_events_case_id_id", "case_events", ["case_id", "id"])
    op.create_table(
        "idempotency_records",
        sa.Column("key_name", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("body", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("key_name", "idempotency_key", name=op.f("pk_idempotency_records")),
    )
    with op.batch_alter_table("flags") as batch_op:
        batch_op.add_column(sa.Column("case_id", sa.Uuid(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_flags_case_id_cases"), "cases", ["case_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("flags") as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_flags_case_id_cases"), type_="foreignkey")
        batch_op.drop_column("case_id")
    op.drop_table("idempotency_records")
    op.drop_table("case_events")
    op.drop_table("cases")

"""Age check records (no birth dates) and flags.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=32)


def upgrade() -> None:
    op.create_table(
        "age_checks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("outcome", _enum("outcome", "allowed", "denied"), nullable=False),
        sa.Column(
            "reason",
            _enum("reason", "meets_minimum_age", "below_minimum_age", "prior_underage_declaration"),
            nullable=False,
        ),
        sa.Column("jurisdiction_code", sa.String(16), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=True),
        sa.Column("rule_version", sa.Integer(), nullable=True),
        sa.Column("minimum_age", sa.Integer(), nullable=False),
        sa.Column("age_capped", sa.Integer(), nullable=False),
        sa.Column("checked_at", TIMESTAMP, nullable=False),
        sa.Column("session_hash", sa.String(64), nullable=True),
        sa.Column("account_id", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_age_checks")),
    )
    op.create_index(
        "ix_age_checks_account_id_checked_at", "age_checks", ["account_id", "checked_at"]
    )
    op.create_index("ix_age_checks_outcome_checked_at", "age_checks", ["outcome", "checked_at"])
    op.create_index(
        "ix_age_checks_session_hash_checked_at", "age_checks", ["session_hash", "checked_at"]
    )

    op.create_table(
        "flags",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column(
            "reason",
            _enum(
                "flagreason",
                "self_declared_underage",
                "user_report",
                "classifier",
                "parental_request",
                "other",
            ),
            nullable=False,
        ),
        sa.Column("confidence", _enum("confidence", "suspected", "confirmed"), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=True),
        sa.Column("flagged_by", sa.String(200), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flags")),
    )
    op.create_index("ix_flags_account_id_created_at", "flags", ["account_id", "created_at"])


def downgrade() -> None:
    op.drop_table("flags")
    op.drop_table("age_checks")

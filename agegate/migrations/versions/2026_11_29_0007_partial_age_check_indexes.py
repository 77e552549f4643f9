"""Partial indexes on age_checks: only denials by time, and only checks that name an account.

The session-hash index goes: nothing looks checks up by session (the lockout poll reads
denials by time). On PostgreSQL the indexes are built and dropped CONCURRENTLY, so that a
large table keeps taking signups while this runs. Each statement commits on its own, so each
is written to be run again after an interruption.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

DENIED = sa.text("outcome = 'denied'")
NAMES_ACCOUNT = sa.text("account_id IS NOT NULL")
OLD = {
    "ix_age_checks_session_hash_checked_at": ["session_hash", "checked_at"],
    "ix_age_checks_account_id_checked_at": ["account_id", "checked_at"],
    "ix_age_checks_outcome_checked_at": ["outcome", "checked_at"],
}


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_age_checks_denied_checked_at",
            "age_checks",
            ["checked_at"],
            postgresql_where=DENIED,
            sqlite_where=DENIED,
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.create_index(
            "ix_age_checks_account_checked_at",
            "age_checks",
            ["account_id", "checked_at"],
            postgresql_where=NAMES_ACCOUNT,
            sqlite_where=NAMES_ACCOUNT,
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        for name in OLD:
            op.drop_index(
                name, table_name="age_checks", postgresql_concurrently=True, if_exists=True
            )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, columns in OLD.items():
            op.create_index(
                name, "age_checks", columns, postgresql_concurrently=True, if_not_exists=True
            )
        for name in ("ix_age_checks_account_checked_at", "ix_age_checks_denied_checked_at"):
            op.drop_index(
                name, table_name="age_checks", postgresql_concurrently=True, if_exists=True
            )

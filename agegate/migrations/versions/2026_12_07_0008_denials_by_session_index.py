"""A partial index of denials by session: a check asks for its own session's denials.

Until a process knows every lockout (while it starts, or while its subscription to lockout
messages is lost; always where the store cannot push), each check looks its session and
account up among the window's denials. Accounts have their index (0007); sessions get this
one, on denials that name a session only, so that allowed checks, most of the table's writes,
do not update it, and the poll (which asks for every denial) cannot mistake it for its own.
Built CONCURRENTLY on PostgreSQL and safe to run again, like 0007.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

DENIED_SESSIONS = sa.text("outcome = 'denied' AND session_hash IS NOT NULL")
NAME = "ix_age_checks_denied_session_hash"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            NAME,
            "age_checks",
            ["session_hash"],
            postgresql_where=DENIED_SESSIONS,
            sqlite_where=DENIED_SESSIONS,
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(NAME, table_name="age_checks", postgresql_concurrently=True, if_exists=True)

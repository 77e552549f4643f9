"""What a target had purged when a legal hold stopped it, for the receipt.

A hold binds from its commit: a worker purging the target stops after the batch in flight
and records how many items it had purged by then. The receipt says the target was held and
what was purged before the hold.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("case_targets", sa.Column("held_after", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("case_targets", "held_after")

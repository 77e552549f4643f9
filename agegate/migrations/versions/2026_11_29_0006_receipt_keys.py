"""Receipt public keys, kept so that receipts signed before a rotation still verify.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "receipt_keys",
        sa.Column("kid", sa.String(64), nullable=False),
        sa.Column("x", sa.String(64), nullable=False),
        sa.Column("first_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_receipt_keys")),
    )


def downgrade() -> None:
    op.drop_table("receipt_keys")

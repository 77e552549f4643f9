"""A step that raises counts as an attempt; a flag links its age check in a column of its own.

`cases.step_failures` counts the steps that raised in a row, and `cases.failed_state` keeps
the state a failed case was in, which `retry` resumes. `flags.age_check_id` holds the age
check whose denial raised the flag; until now the link was read out of the free-text
evidence, where a reference such as `age-check:see ticket 12` broke the case's last step on
every try. Existing flags get the column from their evidence only where it names a check
that exists.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

PREFIX = "age-check:"


def upgrade() -> None:
    # Plain ALTER TABLE, also on SQLite: copying `cases` (batch mode) would break the foreign
    # keys of its rows' flags and steps.
    op.add_column(
        "cases", sa.Column("step_failures", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column("cases", sa.Column("failed_state", sa.String(length=32), nullable=True))
    op.add_column("flags", sa.Column("age_check_id", sa.Uuid(), nullable=True))
    _link_existing_flags()


def _link_existing_flags() -> None:
    bind = op.get_bind()
    flags = sa.table("flags", sa.column("id", sa.Uuid()), sa.column("evidence", sa.Text()), sa.column("age_check_id", sa.Uuid()))  # fmt: skip
    checks = sa.table("age_checks", sa.column("id", sa.Uuid()))
    rows = bind.execute(
        sa.select(flags.c.id, flags.c.evidence).where(flags.c.evidence.like(f"{PREFIX}%"))
    ).all()
    for flag_id, evidence in rows:
        try:
            check_id = uuid.UUID(evidence.removeprefix(PREFIX))
        except ValueError:  # free text that only looks like a link
            continue
        if bind.execute(sa.select(checks.c.id).where(checks.c.id == check_id)).first():
            bind.execute(flags.update().where(flags.c.id == flag_id).values(age_check_id=check_id))


def downgrade() -> None:
    op.drop_column("flags", "age_check_id")
    op.drop_column("cases", "failed_state")
    op.drop_column("cases", "step_failures")

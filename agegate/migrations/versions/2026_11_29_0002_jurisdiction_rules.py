"""The jurisdiction table: one append-only row per rule version.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)

# Every change is a new version: the database refuses to overwrite or delete one.
PG_APPEND_ONLY = """
CREATE FUNCTION jurisdiction_rules_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'jurisdiction_rules is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER jurisdiction_rules_append_only BEFORE UPDATE OR DELETE ON jurisdiction_rules
    FOR EACH ROW EXECUTE FUNCTION jurisdiction_rules_append_only();
"""
SQLITE_APPEND_ONLY = [
    f"""CREATE TRIGGER jurisdiction_rules_no_{action} BEFORE {action.upper()} ON jurisdiction_rules
        BEGIN SELECT RAISE(ABORT, 'jurisdiction_rules is append-only'); END"""
    for action in ("update", "delete")
]


def upgrade() -> None:
    op.create_table(
        "jurisdiction_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("minimum_age", sa.Integer(), nullable=False),
        sa.Column("effective_from", TIMESTAMP, nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "in_force",
                "proposed",
                "suspended",
                name="rulestatus",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("citation", sa.Text(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("source_url", sa.Text(), nullable=False),
        sa.Column("retired", sa.Boolean(), nullable=False),
        sa.Column("changed_by", sa.String(200), nullable=False),
        sa.Column("changed_at", TIMESTAMP, nullable=False),
        sa.Column("change_reason", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "minimum_age BETWEEN 13 AND 25", name=op.f("ck_jurisdiction_rules_minimum_age")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jurisdiction_rules")),
        sa.UniqueConstraint("code", "version", name=op.f("uq_jurisdiction_rules_code")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_APPEND_ONLY)
    else:
        for statement in SQLITE_APPEND_ONLY:
            op.execute(statement)


def downgrade() -> None:
    op.drop_table("jurisdiction_rules")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION jurisdiction_rules_append_only()")

"""The audit log cannot be truncated, and each receipt anchors the chain.

`TRUNCATE` bypasses row triggers, so PostgreSQL refuses it on `audit_events` and
`audit_head` with a statement trigger. (SQLite has no TRUNCATE; its `DELETE` without a
`WHERE` fires the row triggers that already refuse it.) Each receipt records the audit head
at its issue, in its signed body and, for verification in order, in `receipts.audit_seq`
and `receipts.audit_hash`. Receipts issued before this revision have no anchor.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TABLES = ("audit_events", "audit_head")
PG_NO_TRUNCATE = """
CREATE FUNCTION audit_no_truncate() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% cannot be truncated: the audit log is append-only', TG_TABLE_NAME;
END;
$$ LANGUAGE plpgsql;
""" + "".join(
    f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION audit_no_truncate();
"""
    for table in TABLES
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_NO_TRUNCATE)
    op.add_column("receipts", sa.Column("audit_seq", sa.BigInteger(), nullable=True))
    op.add_column("receipts", sa.Column("audit_hash", sa.String(length=64), nullable=True))
    op.create_index(op.f("ix_receipts_audit_seq"), "receipts", ["audit_seq"])


def downgrade() -> None:
    op.drop_index(op.f("ix_receipts_audit_seq"), table_name="receipts")
    op.drop_column("receipts", "audit_hash")
    op.drop_column("receipts", "audit_seq")
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION audit_no_truncate()")

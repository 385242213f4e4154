"""The audit trail anchored outside the database: keyed entry hashes and a TRUNCATE guard.

- `audit_events.scheme`: how each entry's hash is computed.  Rows already there
  keep their unkeyed SHA-256 (scheme 1, the server default); every entry written
  from now on is HMAC-SHA256 under GATEWAY_AUDIT_CHAIN_KEY (scheme 2) and links
  to the last legacy hash, so the whole chain still verifies.  The key itself
  never enters the database.
- PostgreSQL: a statement-level trigger refuses TRUNCATE (row triggers do not see
  it); the row trigger from 0002 keeps refusing UPDATE and DELETE.  SQLite has no
  TRUNCATE (a DELETE without WHERE fires the row trigger).  Who may do what is
  `gateway db grant-app-role`.

Adding a column with a constant default rewrites no row (SQLite ALTER TABLE ADD
COLUMN; PostgreSQL 11+ stores the default in the catalogue), so the append-only
triggers do not fire and no batch table rebuild drops them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

PG_NO_TRUNCATE = """
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
"""


def upgrade() -> None:
    op.add_column("audit_events", sa.Column("scheme", sa.SmallInteger(), server_default=sa.text("1"), nullable=False))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_NO_TRUNCATE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events")
    # Keyed entries stay keyed: code from before 0009 cannot verify them (it knows only SHA-256).
    op.drop_column("audit_events", "scheme")

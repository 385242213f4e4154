"""The request lifecycle: versions, holds, staff-only timeline entries, notifications in the outbox.

- requests.version counts every change (ETag / If-Match); requests.hold_reason
  says why an on_hold request is held (AUTH_REVOKED leaves the hold only as
  returned or denied).
- request_events.staff_only hides entries (release uploads and withdrawals)
  from the requester.
- outbox.kind: `route` (a queue hand-over) or `notify` (a webhook event the
  relay fans out), with the event in outbox.payload; a notify row has no queue.
- revocations.document_id: the written revocation, when it was uploaded.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("hold_reason", sa.String(length=40), nullable=True))
    with op.batch_alter_table("request_events") as batch:
        batch.add_column(sa.Column("staff_only", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=12), nullable=False, server_default="route"))
        batch.add_column(sa.Column("payload", sa.JSON(), nullable=True))
        batch.alter_column("queue", existing_type=sa.String(length=80), nullable=True)
    with op.batch_alter_table("revocations") as batch:
        batch.add_column(sa.Column("document_id", sa.String(length=36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("revocations") as batch:
        batch.drop_column("document_id")
    op.execute("DELETE FROM outbox WHERE kind <> 'route'")
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column("queue", existing_type=sa.String(length=80), nullable=False)
        batch.drop_column("payload")
        batch.drop_column("kind")
    with op.batch_alter_table("request_events") as batch:
        batch.drop_column("staff_only")
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("hold_reason")
        batch.drop_column("version")

"""`outbox.settled_at` and `ix_outbox_unsettled`: the relay's look for lost route jobs reads only the routes
whose hand-over is not yet known to be recorded (gateway/routing/reconcile.py), with no time window.

The routes already handed over are settled here, once, so the first looks do not walk the outbox's history;
`ix_outbox_sent` (0019), which bounded the windowed look, goes.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from gateway.db import UTCDateTime

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

UNSETTLED = sa.text("kind = 'route' AND settled_at IS NULL AND sent_at IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("settled_at", UTCDateTime(), nullable=True))
    op.execute("UPDATE outbox SET settled_at = sent_at WHERE state = 'sent' AND kind = 'route' AND EXISTS ("
               "SELECT 1 FROM job_effects WHERE job_effects.request_id = outbox.request_id "
               "AND job_effects.step = outbox.queue || '#' || CAST(outbox.id AS VARCHAR))")
    op.create_index("ix_outbox_unsettled", "outbox", ["id"], postgresql_where=UNSETTLED, sqlite_where=UNSETTLED)
    op.drop_index("ix_outbox_sent", table_name="outbox")


def downgrade() -> None:
    op.create_index("ix_outbox_sent", "outbox", ["state", "sent_at"])
    op.drop_index("ix_outbox_unsettled", table_name="outbox", postgresql_where=UNSETTLED, sqlite_where=UNSETTLED)
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("settled_at")

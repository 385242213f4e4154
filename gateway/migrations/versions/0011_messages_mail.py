"""Messages on a request, notification e-mail, and which clock set the due date.

- `request_messages`: the thread between the requester and the facility's
  records staff, with staff-only internal notes.
- `mail_notifications`: one e-mail per (event, portal user), written with the
  event's fan-out and sent by a job; `users.email_notifications` lets each
  person turn them off (on by default, so existing users start receiving them).
- `requests.due_basis` / `due_rule`: the clock that set `due_on` at submission
  (null for requests submitted before this revision: the rules did not say);
  `due_extended_at` / `due_extension_reason`: the one extension of HIPAA's
  30-day access clock.  `ix_requests_status_updated` serves the daily
  stale-work sweep.

Columns are added with ALTER TABLE ADD COLUMN (no table rebuild on SQLite).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from gateway.db import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("email_notifications", sa.Boolean(), server_default=sa.true(),
                                     nullable=False))
    op.add_column("requests", sa.Column("due_basis", sa.String(length=20), nullable=True))
    op.add_column("requests", sa.Column("due_rule", sa.String(length=200), nullable=True))
    op.add_column("requests", sa.Column("due_extended_at", UTCDateTime(), nullable=True))
    op.add_column("requests", sa.Column("due_extension_reason", sa.Text(), nullable=True))
    op.create_index("ix_requests_status_updated", "requests", ["status", "updated_at"], unique=False)

    op.create_table(
        "request_messages",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("author_kind", sa.String(length=12), nullable=False),
        sa.Column("author_actor", sa.String(length=80), nullable=False),
        sa.Column("author_name", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("internal", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["requests.id"],
                                name=op.f("fk_request_messages_request_id_requests")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_request_messages")),
    )
    op.create_index("ix_request_messages_request_at", "request_messages", ["request_id", "at", "id"], unique=False)

    op.create_table(
        "mail_notifications",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("event_type", sa.String(length=60), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("last_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.String(length=120), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_mail_notifications_user_id_users")),
        sa.ForeignKeyConstraint(["request_id"], ["requests.id"],
                                name=op.f("fk_mail_notifications_request_id_requests")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_notifications")),
        sa.UniqueConstraint("event_id", "user_id", name=op.f("uq_mail_notifications_event_id")),
    )
    op.create_index("ix_mail_notifications_due", "mail_notifications", ["state", "next_attempt_at"], unique=False)
    op.create_index(op.f("ix_mail_notifications_user_id"), "mail_notifications", ["user_id"], unique=False)
    op.create_index(op.f("ix_mail_notifications_request_id"), "mail_notifications", ["request_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_mail_notifications_request_id"), table_name="mail_notifications")
    op.drop_index(op.f("ix_mail_notifications_user_id"), table_name="mail_notifications")
    op.drop_index("ix_mail_notifications_due", table_name="mail_notifications")
    op.drop_table("mail_notifications")
    op.drop_index("ix_request_messages_request_at", table_name="request_messages")
    op.drop_table("request_messages")
    op.drop_index("ix_requests_status_updated", table_name="requests")
    for column in ("due_extension_reason", "due_extended_at", "due_rule", "due_basis"):
        op.drop_column("requests", column)
    op.drop_column("users", "email_notifications")

"""Accounts: deactivation, credential epochs, password resets, account changes, session labels.

- `users.credentials_epoch`: bumped by deactivation and by a password reset or
  change; access tokens carry the epoch they were issued under and are refused
  once it moves on.  `users.deactivated_at` says since when.
- `password_resets`: one row per reset e-mail; only the token's SHA-256.
- `account_changes`: before/after of each role, facility or activation change,
  tied to its audit entry by `audit_seq`.
- `portal_sessions.client`: a short browser label for the user's session list;
  `portal_sessions.credentials_epoch`: the user's epoch at sign-in (an older
  one ends the session at its next request).

Columns are added with ALTER TABLE ADD COLUMN (no table rebuild on SQLite).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from gateway.db import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("credentials_epoch", sa.Integer(), server_default=sa.text("0"),
                                     nullable=False))
    op.add_column("users", sa.Column("deactivated_at", UTCDateTime(), nullable=True))
    op.add_column("portal_sessions", sa.Column("client", sa.String(length=80), nullable=True))
    op.add_column("portal_sessions", sa.Column("credentials_epoch", sa.Integer(), server_default=sa.text("0"),
                                               nullable=False))

    op.create_table(
        "password_resets",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.Column("mail_state", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.String(length=120), nullable=True),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_password_resets_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_password_resets")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_password_resets_token_hash")),
    )
    op.create_index("ix_password_resets_due", "password_resets", ["mail_state", "next_attempt_at"], unique=False)
    op.create_index(op.f("ix_password_resets_user_id"), "password_resets", ["user_id"], unique=False)

    op.create_table(
        "account_changes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column("before", sa.JSON(), nullable=False),
        sa.Column("after", sa.JSON(), nullable=False),
        sa.Column("audit_seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_account_changes_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_changes")),
    )
    op.create_index(op.f("ix_account_changes_user_id"), "account_changes", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_account_changes_user_id"), table_name="account_changes")
    op.drop_table("account_changes")
    op.drop_index(op.f("ix_password_resets_user_id"), table_name="password_resets")
    op.drop_index("ix_password_resets_due", table_name="password_resets")
    op.drop_table("password_resets")
    op.drop_column("portal_sessions", "credentials_epoch")
    op.drop_column("portal_sessions", "client")
    op.drop_column("users", "deactivated_at")
    op.drop_column("users", "credentials_epoch")

"""TOTP second factor (RFC 6238) and its recovery codes.

- `user_mfa_totp`: one row per user who began enrolment; the shared secret is
  sealed (gateway/crypto.py), `enabled_at` is null while the enrolment waits
  for its first code, `last_step` is the last accepted time step (a code is
  never accepted twice).
- `user_mfa_recovery_codes`: single-use codes, only their keyed hashes.

Revision ID: 0013
Revises: 0011
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from gateway.db import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user_mfa_totp",
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("secret_sealed", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("enabled_at", UTCDateTime(), nullable=True),
        sa.Column("last_step", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_user_mfa_totp_user_id_users")),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_mfa_totp")),
    )
    op.create_table(
        "user_mfa_recovery_codes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_user_mfa_recovery_codes_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_mfa_recovery_codes")),
    )
    op.create_index(op.f("ix_user_mfa_recovery_codes_user_id"), "user_mfa_recovery_codes", ["user_id"],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_user_mfa_recovery_codes_user_id"), table_name="user_mfa_recovery_codes")
    op.drop_table("user_mfa_recovery_codes")
    op.drop_table("user_mfa_totp")

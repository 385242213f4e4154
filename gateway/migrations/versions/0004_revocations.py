"""Revocations: patients' revocations of authorizations for a recipient, from a date.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

from gateway.db import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "revocations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_first_name", sa.String(length=100), nullable=False),
        sa.Column("patient_last_name", sa.String(length=100), nullable=False),
        sa.Column("patient_date_of_birth", sa.Date(), nullable=False),
        sa.Column("recipient", sa.String(length=200), nullable=False),
        sa.Column("effective_on", sa.Date(), nullable=False),
        sa.Column("facility", sa.String(length=64), nullable=True),
        sa.Column("recorded_by", sa.String(length=80), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revocations")),
    )
    with op.batch_alter_table("revocations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_revocations_patient_date_of_birth"), ["patient_date_of_birth"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("revocations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_revocations_patient_date_of_birth"))

    op.drop_table("revocations")

"""Bulk submission: `batches` (sealed items, progress, counts) and `batch_items` (each item's outcome).

Revision ID: 0016
Revises: 0011
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from gateway.db import UTCDateTime

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("principal", sa.JSON(), nullable=False),
        sa.Column("audit_ctx", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("processed", sa.Integer(), nullable=False),
        sa.Column("created_count", sa.Integer(), nullable=False),
        sa.Column("rejected_count", sa.Integer(), nullable=False),
        sa.Column("items_sealed", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"], name=op.f("fk_batches_org_id_organizations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
    )
    op.create_index(op.f("ix_batches_org_id"), "batches", ["org_id"], unique=False)
    op.create_table(
        "batch_items",
        sa.Column("batch_id", sa.String(length=36), nullable=False),
        sa.Column("index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=True),
        sa.Column("reference", sa.String(length=100), nullable=True),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"], name=op.f("fk_batch_items_batch_id_batches")),
        sa.ForeignKeyConstraint(["request_id"], ["requests.id"], name=op.f("fk_batch_items_request_id_requests")),
        sa.PrimaryKeyConstraint("batch_id", "index", name=op.f("pk_batch_items")),
    )
    op.create_index(op.f("ix_batch_items_request_id"), "batch_items", ["request_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_batch_items_request_id"), table_name="batch_items")
    op.drop_table("batch_items")
    op.drop_index(op.f("ix_batches_org_id"), table_name="batches")
    op.drop_table("batches")

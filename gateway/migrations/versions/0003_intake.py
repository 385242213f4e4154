"""Intake: records requests, their timeline, documents, rejected (malware) uploads, idempotency records.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

from gateway.db import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idempotency_records",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("principal", sa.String(length=80), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.JSON(), nullable=True),
        sa.Column("location", sa.String(length=300), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_records")),
        sa.UniqueConstraint("principal", "key", name=op.f("uq_idempotency_records_principal")),
    )
    op.create_table(
        "requests",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("facility", sa.String(length=64), nullable=False),
        sa.Column("pathway", sa.String(length=20), nullable=False),
        sa.Column("purpose", sa.String(length=40), nullable=False),
        sa.Column("practice", sa.JSON(), nullable=True),
        sa.Column("patient", sa.JSON(), nullable=False),
        sa.Column("records", sa.JSON(), nullable=False),
        sa.Column("delivery", sa.JSON(), nullable=False),
        sa.Column("authorization", sa.JSON(), nullable=True),
        sa.Column("legal_process", sa.JSON(), nullable=True),
        sa.Column("public_benefit_claim", sa.Boolean(), nullable=False),
        sa.Column("fee_waiver_requested", sa.Boolean(), nullable=False),
        sa.Column("instructions", sa.Text(), nullable=True),
        sa.Column("deficiencies", sa.JSON(), nullable=False),
        sa.Column("fee_estimate", sa.JSON(), nullable=True),
        sa.Column("due_on", sa.Date(), nullable=True),
        sa.Column("routing_queue", sa.String(length=80), nullable=True),
        sa.Column("routed_at", UTCDateTime(), nullable=True),
        sa.Column("assigned_to", sa.String(length=80), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("submitted_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"], name=op.f("fk_requests_org_id_organizations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_requests")),
    )
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.create_index("ix_requests_facility_status", ["facility", "status"], unique=False)
        batch_op.create_index("ix_requests_org_created", ["org_id", "created_at", "id"], unique=False)
        batch_op.create_index(
            "uq_requests_open_reference",
            ["org_id", "reference"],
            unique=True,
            postgresql_where=sa.text("status NOT IN ('fulfilled', 'denied', 'cancelled')"),
            sqlite_where=sa.text("status NOT IN ('fulfilled', 'denied', 'cancelled')"),
        )

    op.create_table(
        "documents",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=True),
        sa.Column("storage_key", sa.String(length=120), nullable=False),
        sa.Column("scan_status", sa.String(length=20), nullable=False),
        sa.Column("scan_engine", sa.String(length=100), nullable=False),
        sa.Column("scan_signature_version", sa.String(length=100), nullable=True),
        sa.Column("scanned_at", UTCDateTime(), nullable=False),
        sa.Column("uploaded_at", UTCDateTime(), nullable=False),
        sa.Column("uploaded_by", sa.String(length=80), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["requests.id"], name=op.f("fk_documents_request_id_requests")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_documents")),
        sa.UniqueConstraint("storage_key", name=op.f("uq_documents_storage_key")),
    )
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_documents_request_id"), ["request_id"], unique=False)

    op.create_table(
        "rejected_uploads",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("signature", sa.String(length=200), nullable=False),
        sa.Column("uploaded_by", sa.String(length=80), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["requests.id"], name=op.f("fk_rejected_uploads_request_id_requests")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rejected_uploads")),
    )
    with op.batch_alter_table("rejected_uploads", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rejected_uploads_request_id"), ["request_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_rejected_uploads_sha256"), ["sha256"], unique=False)

    op.create_table(
        "request_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["requests.id"], name=op.f("fk_request_events_request_id_requests")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_request_events")),
    )
    with op.batch_alter_table("request_events", schema=None) as batch_op:
        batch_op.create_index("ix_request_events_request_at", ["request_id", "at", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("request_events", schema=None) as batch_op:
        batch_op.drop_index("ix_request_events_request_at")

    op.drop_table("request_events")
    with op.batch_alter_table("rejected_uploads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rejected_uploads_sha256"))
        batch_op.drop_index(batch_op.f("ix_rejected_uploads_request_id"))

    op.drop_table("rejected_uploads")
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_documents_request_id"))

    op.drop_table("documents")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_requests_open_reference",
            postgresql_where=sa.text("status NOT IN ('fulfilled', 'denied', 'cancelled')"),
            sqlite_where=sa.text("status NOT IN ('fulfilled', 'denied', 'cancelled')"),
        )
        batch_op.drop_index("ix_requests_org_created")
        batch_op.drop_index("ix_requests_facility_status")

    op.drop_table("requests")
    op.drop_table("idempotency_records")

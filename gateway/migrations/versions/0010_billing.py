"""Invoices and payment (M.G.L. c.111 §70) and the accounting of disclosures (45 CFR 164.528).

- invoices: one per request (unique request_id), money in integer cents, the lines as JSON, the
  schedule applied and the invoice date, the waiver or no-charge reason, payment and dispute state.
- payments: one per invoice (unique invoice_id).
- disclosures: one per released request (unique request_id), with the patient's date of birth, and
  disclosure_names: the patient's normalized names (the request's name and former names) for search.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from gateway.db import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "invoices",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=True),
        sa.Column("basis", sa.String(length=80), nullable=False),
        sa.Column("schedule_effective_on", sa.Date(), nullable=False),
        sa.Column("issued_on", sa.Date(), nullable=False),
        sa.Column("issued_at", UTCDateTime(), nullable=False),
        sa.Column("issued_by", sa.String(length=80), nullable=False),
        sa.Column("waiver_reason", sa.Text(), nullable=True),
        sa.Column("no_charge_reason", sa.Text(), nullable=True),
        sa.Column("paid_at", UTCDateTime(), nullable=True),
        sa.Column("disputed", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("dispute_note", sa.Text(), nullable=True),
        sa.Column("disputed_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["request_id"], ["requests.id"], name=op.f("fk_invoices_request_id_requests")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
        sa.UniqueConstraint("request_id", name=op.f("uq_invoices_request_id")),
    )
    op.create_table(
        "payments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("invoice_id", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_by", sa.String(length=80), nullable=False),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], name=op.f("fk_payments_invoice_id_invoices")),
        sa.ForeignKeyConstraint(["request_id"], ["requests.id"], name=op.f("fk_payments_request_id_requests")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("invoice_id", name=op.f("uq_payments_invoice_id")),
    )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payments_request_id"), ["request_id"], unique=False)

    op.create_table(
        "disclosures",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("disclosed_at", UTCDateTime(), nullable=False),
        sa.Column("disclosed_by", sa.String(length=80), nullable=False),
        sa.Column("facility", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("pathway", sa.String(length=20), nullable=False),
        sa.Column("purpose", sa.String(length=40), nullable=False),
        sa.Column("recipient", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("purpose_statement", sa.Text(), nullable=False),
        sa.Column("documents", sa.JSON(), nullable=False),
        sa.Column("accountable", sa.Boolean(), nullable=False),
        sa.Column("patient_date_of_birth", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(["request_id"], ["requests.id"], name=op.f("fk_disclosures_request_id_requests")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disclosures")),
        sa.UniqueConstraint("request_id", name=op.f("uq_disclosures_request_id")),
    )
    with op.batch_alter_table("disclosures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_disclosures_facility"), ["facility"], unique=False)
        batch_op.create_index("ix_disclosures_dob_disclosed", ["patient_date_of_birth", "disclosed_at", "id"],
                              unique=False)

    op.create_table(
        "disclosure_names",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("disclosure_id", sa.String(length=36), nullable=False),
        sa.Column("name_key", sa.String(length=210), nullable=False),
        sa.ForeignKeyConstraint(["disclosure_id"], ["disclosures.id"],
                                name=op.f("fk_disclosure_names_disclosure_id_disclosures")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disclosure_names")),
    )
    with op.batch_alter_table("disclosure_names", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_disclosure_names_disclosure_id"), ["disclosure_id"], unique=False)
        batch_op.create_index("ix_disclosure_names_key", ["name_key", "disclosure_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("disclosure_names", schema=None) as batch_op:
        batch_op.drop_index("ix_disclosure_names_key")
        batch_op.drop_index(batch_op.f("ix_disclosure_names_disclosure_id"))
    op.drop_table("disclosure_names")
    with op.batch_alter_table("disclosures", schema=None) as batch_op:
        batch_op.drop_index("ix_disclosures_dob_disclosed")
        batch_op.drop_index(batch_op.f("ix_disclosures_facility"))
    op.drop_table("disclosures")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payments_request_id"))
    op.drop_table("payments")
    op.drop_table("invoices")

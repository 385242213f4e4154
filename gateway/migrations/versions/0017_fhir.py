"""FHIR interface: `fhir_clients` (SMART Backend Services clients per organization) and `fhir_tasks`.

Revision ID: 0017
Revises: 0016 (the head of this branch; the lead rechains)
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from gateway.db import UTCDateTime

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fhir_clients",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("jwks", sa.JSON(), nullable=True),
        sa.Column("jwks_url", sa.Text(), nullable=True),
        sa.Column("jwks_fetched_at", UTCDateTime(), nullable=True),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"], name=op.f("fk_fhir_clients_org_id_organizations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fhir_clients")),
    )
    op.create_index(op.f("ix_fhir_clients_org_id"), "fhir_clients", ["org_id"], unique=False)
    op.create_table(
        "fhir_tasks",
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=36), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("identifier_system", sa.String(length=300), nullable=True),
        sa.Column("rejection", sa.JSON(), nullable=True),
        sa.Column("rejected_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["requests.id"], name=op.f("fk_fhir_tasks_request_id_requests")),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"], name=op.f("fk_fhir_tasks_org_id_organizations")),
        sa.ForeignKeyConstraint(["client_id"], ["fhir_clients.id"], name=op.f("fk_fhir_tasks_client_id_fhir_clients")),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_fhir_tasks")),
    )
    op.create_index(op.f("ix_fhir_tasks_org_id"), "fhir_tasks", ["org_id"], unique=False)
    op.create_index(op.f("ix_fhir_tasks_client_id"), "fhir_tasks", ["client_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_fhir_tasks_client_id"), table_name="fhir_tasks")
    op.drop_index(op.f("ix_fhir_tasks_org_id"), table_name="fhir_tasks")
    op.drop_table("fhir_tasks")
    op.drop_index(op.f("ix_fhir_clients_org_id"), table_name="fhir_clients")
    op.drop_table("fhir_clients")

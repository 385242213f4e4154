"""Reading signed authorizations: the `reading_*` columns of `documents` (findings only, never text).

Revision ID: 0018
Revises: 0017 (the head of this branch; the lead rechains)
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

COLUMNS = (
    ("reading_status", sa.String(length=10)),
    ("reading_legible", sa.Boolean()),
    ("reading_confidence", sa.Integer()),
    ("reading_pages", sa.Integer()),
    ("reading_findings", sa.JSON()),
)


def upgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        for name, kind in COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        for name, _kind in reversed(COLUMNS):
            batch.drop_column(name)

"""Placeholder for the billing migration (invoices and payments), written on another branch.

This empty revision only lets 0011 chain onto 0010 while the two branches are apart;
main's real 0010 replaces it on merge.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

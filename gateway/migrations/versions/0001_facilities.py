"""Facilities and their policy values, seeded with the hospital system's four choices.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

FACILITIES = [
    {"code": "lowell-general", "name": "Lowell General Hospital", "turnaround_days": 10,
     "turnaround_business_days": False, "requires_practice": False,
     "aliases": ["Lowell General", "Lowell General Hospital Inc", "LGH"]},
    {"code": "melrosewakefield", "name": "MelroseWakefield Hospital", "turnaround_days": 10,
     "turnaround_business_days": False, "requires_practice": False,
     "aliases": ["Melrose Wakefield Hospital", "MelroseWakefield Healthcare", "Melrose-Wakefield Hospital"]},
    {"code": "tufts-mc", "name": "Tufts Medical Center", "turnaround_days": 5,
     "turnaround_business_days": True, "requires_practice": False,
     "aliases": ["Tufts MC", "Tufts Medical Center Inc", "Tufts-New England Medical Center", "TMC"]},
    {"code": "community-practices", "name": "Another location (affiliated doctor's office)",
     "turnaround_days": 10, "turnaround_business_days": False, "requires_practice": True, "aliases": []},
]


def upgrade() -> None:
    table = op.create_table(
        "facilities",
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("accepts_electronic", sa.Boolean(), nullable=False),
        sa.Column("turnaround_days", sa.Integer(), nullable=False),
        sa.Column("turnaround_business_days", sa.Boolean(), nullable=False),
        sa.Column("requires_practice", sa.Boolean(), nullable=False),
        sa.Column("max_authorization_age_days", sa.Integer(), nullable=False),
        sa.Column("aliases", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_facilities")),
    )
    op.bulk_insert(table, [
        {"accepts_electronic": True, "max_authorization_age_days": 180, **row} for row in FACILITIES
    ])


def downgrade() -> None:
    op.drop_table("facilities")

"""Health-system names on facilities; request groups (one request per facility).

- `facilities.health_system` / `health_system_aliases`: the system that runs a
  facility and its other legal names (configuration, like `aliases`): an
  authorization naming "Tufts Medicine" names each of its facilities.  The
  community-practices facility gets the network's names as aliases.

Columns are added with ALTER TABLE ADD COLUMN (no table rebuild on SQLite).

Revision ID: 0015
Revises: 0011
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0011"
branch_labels = None
depends_on = None

TUFTS_MEDICINE = "Tufts Medicine"
# Its legal variants: "Tufts Medicine, Inc." already matches by normalization; Wellforce is its former name.
TUFTS_MEDICINE_ALIASES = ["Tufts Medicine Health System", "Wellforce", "Wellforce Health System"]
SYSTEM_FACILITIES = ("lowell-general", "melrosewakefield", "tufts-mc", "community-practices")
COMMUNITY_ALIASES = ["Tufts Medicine community practices", "Tufts Medicine Community Care",
                     "Tufts Medicine Integrated Network"]

_facilities = sa.table("facilities", sa.column("code", sa.String), sa.column("aliases", sa.JSON),
                       sa.column("health_system", sa.String), sa.column("health_system_aliases", sa.JSON))


def upgrade() -> None:
    op.add_column("facilities", sa.Column("health_system", sa.String(length=200), nullable=True))
    op.add_column("facilities", sa.Column("health_system_aliases", sa.JSON(), nullable=True))
    op.execute(_facilities.update().values(health_system_aliases=[]))
    op.execute(_facilities.update().where(_facilities.c.code.in_(SYSTEM_FACILITIES))
               .values(health_system=TUFTS_MEDICINE, health_system_aliases=TUFTS_MEDICINE_ALIASES))
    op.execute(_facilities.update().where(_facilities.c.code == "community-practices")
               .values(aliases=COMMUNITY_ALIASES))
    with op.batch_alter_table("facilities", schema=None) as batch_op:
        batch_op.alter_column("health_system_aliases", existing_type=sa.JSON(), nullable=False)


def downgrade() -> None:
    op.execute(_facilities.update().where(_facilities.c.code == "community-practices").values(aliases=[]))
    with op.batch_alter_table("facilities", schema=None) as batch_op:
        batch_op.drop_column("health_system_aliases")
        batch_op.drop_column("health_system")

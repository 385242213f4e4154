"""Health-system names on facilities; request groups (one request per facility).

- `facilities.health_system` / `health_system_aliases`: the system that runs a
  facility and its other legal names (configuration, like `aliases`): an
  authorization naming "Tufts Medicine" names each of its facilities.  The
  community-practices facility gets the network's names as aliases.
- `request_groups` and `requests.group_id`: the requests created together for
  several facilities.  A reference is now unique per organization *and
  facility* among open requests (`uq_requests_open_reference`), so the requests
  of one group share it.
- `documents.storage_key` is no longer unique (indexed instead): a document
  uploaded to a group is one stored object with a row in each request.

The facilities' columns are added with ALTER TABLE ADD COLUMN; `requests` and
`documents` change constraints, which SQLite does by rebuilding the table
(batch mode).

Revision ID: 0015
Revises: 0011
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from gateway.db import UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

TUFTS_MEDICINE = "Tufts Medicine"
# Its legal variants: "Tufts Medicine, Inc." already matches by normalization; Wellforce is its former name.
TUFTS_MEDICINE_ALIASES = ["Tufts Medicine Health System", "Wellforce", "Wellforce Health System"]
SYSTEM_FACILITIES = ("lowell-general", "melrosewakefield", "tufts-mc", "community-practices")
COMMUNITY_ALIASES = ["Tufts Medicine community practices", "Tufts Medicine Community Care",
                     "Tufts Medicine Integrated Network"]

_OPEN = sa.text("status NOT IN ('fulfilled', 'denied', 'cancelled')")
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

    op.create_table(
        "request_groups",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"], name=op.f("fk_request_groups_org_id_organizations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_request_groups")),
    )
    op.create_index("ix_request_groups_org_created", "request_groups", ["org_id", "created_at"], unique=False)
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("group_id", sa.String(length=36), nullable=True))
        batch_op.create_foreign_key(batch_op.f("fk_requests_group_id_request_groups"), "request_groups",
                                    ["group_id"], ["id"])
        batch_op.create_index(batch_op.f("ix_requests_group_id"), ["group_id"], unique=False)
        batch_op.drop_index("uq_requests_open_reference", postgresql_where=_OPEN, sqlite_where=_OPEN)
        batch_op.create_index("uq_requests_open_reference", ["org_id", "facility", "reference"], unique=True,
                              postgresql_where=_OPEN, sqlite_where=_OPEN)
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.drop_constraint("uq_documents_storage_key", type_="unique")
        batch_op.create_index(batch_op.f("ix_documents_storage_key"), ["storage_key"], unique=False)


def downgrade() -> None:
    # Shared objects cannot stay shared under a unique key: this step back fails while any exists.
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_documents_storage_key"))
        batch_op.create_unique_constraint("uq_documents_storage_key", ["storage_key"])
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_index("uq_requests_open_reference", postgresql_where=_OPEN, sqlite_where=_OPEN)
        batch_op.create_index("uq_requests_open_reference", ["org_id", "reference"], unique=True,
                              postgresql_where=_OPEN, sqlite_where=_OPEN)
        batch_op.drop_index(batch_op.f("ix_requests_group_id"))
        batch_op.drop_constraint("fk_requests_group_id_request_groups", type_="foreignkey")
        batch_op.drop_column("group_id")
    op.drop_index("ix_request_groups_org_created", table_name="request_groups")
    op.drop_table("request_groups")
    op.execute(_facilities.update().where(_facilities.c.code == "community-practices").values(aliases=[]))
    with op.batch_alter_table("facilities", schema=None) as batch_op:
        batch_op.drop_column("health_system_aliases")
        batch_op.drop_column("health_system")

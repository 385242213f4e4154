"""Alembic: empty → head → base → head on PostgreSQL and SQLite, and the models match the migrations."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from gateway import migrate
from gateway.db import normalize_url
from gateway.models import metadata


@pytest.mark.parametrize("empty_database", ["sqlite", "postgresql"], indirect=True)
def test_upgrade_downgrade_upgrade(empty_database):
    url = empty_database
    migrate.upgrade(url)
    engine = create_engine(normalize_url(url))
    try:
        head = migrate.head_revision(url)
        assert migrate.current_revision(engine) == head
        assert {"facilities", "users", "audit_events"} <= set(inspect(engine).get_table_names())
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), metadata)
        assert diff == [], f"models and migrations disagree: {diff}"

        migrate.downgrade(url, "base")
        assert migrate.current_revision(engine) is None
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}

        migrate.upgrade(url)
        assert migrate.current_revision(engine) == head
    finally:
        engine.dispose()

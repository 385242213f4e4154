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


def test_0020_settles_the_routes_already_handed_over(empty_database_any):
    """The outbox's history is settled by the migration, once, so the relay's first looks read only what is owed
    (gateway/routing/reconcile.py)."""
    from datetime import UTC, datetime

    from sqlalchemy import insert, select, text

    from gateway.outbox import OutboxMessage
    from gateway.routing.models import JobEffect

    url = empty_database_any
    migrate.upgrade(url, "0019")
    engine = create_engine(normalize_url(url))
    sent_at = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    outbox = OutboxMessage.__table__
    try:
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":  # rows without their requests: foreign keys not checked
                connection.execute(text("SET LOCAL session_replication_role = replica"))
            for id_, kind, state in ((1, "route", "sent"), (2, "route", "sent"), (3, "notify", "sent"),
                                     (4, "route", "pending")):
                connection.execute(insert(outbox).values(
                    id=id_, request_id=f"req-{id_}", kind=kind, queue="facility.tufts-mc" if kind == "route" else None,
                    at_front=False, state=state, attempts=0, sent_at=sent_at if state == "sent" else None))
            connection.execute(insert(JobEffect.__table__).values(request_id="req-1", step="facility.tufts-mc#1",
                                                                  receipt={}))
            connection.execute(insert(JobEffect.__table__).values(request_id="req-2", step="facility.tufts-mc#99",
                                                                  receipt={}))  # another step's effect
        migrate.upgrade(url)
        with engine.connect() as connection:
            settled = dict(connection.execute(select(outbox.c.id, outbox.c.settled_at)).all())
        assert settled == {1: sent_at, 2: None, 3: None, 4: None}
    finally:
        engine.dispose()

"""A claim takes at most its limit, whatever plan PostgreSQL picks for it.

As `id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)` inside the UPDATE, a nested-loop plan ran the subquery
again for every row it scanned, each run skipping the rows the UPDATE had already changed: a claim of 2 took
every due row.  The planner picks that plan on its own when it expects few due rows; here it is forced
(SET LOCAL, this transaction only), and everything happens in one transaction that is rolled back, so the
shared database keeps nothing."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Column, Index, MetaData, String, Table, text

from gateway.db import UTCDateTime, lease_due, utcnow
from gateway.outbox import OutboxMessage, _claim_statement
from tests.factories import bearer, make_tenant, request_body

# Every other join and aggregate turned off: the IN subquery becomes the inner side of a nested loop.
NESTED_LOOP_ONLY = ("enable_hashagg", "enable_hashjoin", "enable_mergejoin", "enable_material", "enable_sort")


def _force_nested_loop(session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        for setting in NESTED_LOOP_ONLY:
            session.execute(text(f"SET LOCAL {setting} = off"))


def test_an_outbox_claim_takes_no_more_than_its_limit(client, db):
    firm = make_tenant(db)
    created = client.post("/v1/requests", json=request_body("tufts-mc"), headers=bearer(firm.api_key))
    assert created.status_code == 201, created.get_json()
    request_id, now = created.get_json()["id"], utcnow()
    session = db.sessions()
    try:
        session.add_all([OutboxMessage(request_id=request_id, kind="route", queue="bench", state="pending",
                                       next_attempt_at=now - timedelta(minutes=10)) for _ in range(6)])
        session.flush()
        _force_nested_loop(session)
        rows = session.execute(_claim_statement(None, not db.is_sqlite), {"now": now, "limit": 2, "token": "test-claim",
                                                        "expires": now + timedelta(minutes=1)}).all()
        assert len(rows) == 2
    finally:
        session.rollback()
        session.close()


def test_a_lease_takes_no_more_than_its_limit(db):
    # Shaped as the leased tables are (webhook deliveries, e-mails, reset e-mails), due-time index included.
    scratch = Table("lease_scratch", MetaData(), Column("id", String(8), primary_key=True),
                    Column("state", String(12)), Column("next_attempt_at", UTCDateTime),
                    Index("ix_lease_scratch_next_attempt_at", "next_attempt_at"), prefixes=["TEMPORARY"])
    now = utcnow()
    session = db.sessions()
    try:
        scratch.create(session.connection())
        # Oldest first in the table's own order, as rows due for a while are: the scan meets them first.
        session.execute(scratch.insert(), [{"id": f"r{n:03d}", "state": "pending",
                                            "next_attempt_at": now - timedelta(minutes=100 - n)} for n in range(50)])
        session.execute(text("ANALYZE lease_scratch") if db.engine.dialect.name == "postgresql" else text("SELECT 1"))
        _force_nested_loop(session)
        leased = lease_due(session, scratch, "state", now=now, limit=3, lease=timedelta(minutes=5))
        assert leased == ["r000", "r001", "r002"]
    finally:
        session.rollback()
        session.close()

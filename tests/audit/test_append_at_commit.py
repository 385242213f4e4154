"""Audit entries are appended when their transaction commits, as its last statements, and never otherwise.

On the suite's databases (SQLite and PostgreSQL): what a rolled-back transaction or savepoint noted is never
appended; a commit appends its entries in order, linked to the chain; the chain head is untouched until the
commit, so another transaction can append meanwhile (on PostgreSQL, where rows lock, not the database).
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from gateway.audit.models import AuditChainHead, AuditEvent
from gateway.audit.service import record, record_many, verify_chain


def _entries(db, marker: str) -> list[str]:
    with db.transaction() as session:
        return list(session.scalars(select(AuditEvent.action).where(AuditEvent.object_id == marker)
                                    .order_by(AuditEvent.seq)))


def _head(db) -> int:
    with db.transaction() as session:
        return session.scalar(select(AuditChainHead.seq))


def test_a_commit_appends_what_its_transaction_noted_in_order_and_a_rollback_nothing(db):
    marker = uuid.uuid4().hex
    with db.transaction() as session:
        record(session, actor="user:t", action="first.noted", object_type="test", object_id=marker)
        record(session, actor="user:t", action="second.noted", object_type="test", object_id=marker)
        assert session.scalar(select(func.count()).select_from(AuditEvent)
                              .where(AuditEvent.object_id == marker)) == 0  # nothing appended yet
    assert _entries(db, marker) == ["first.noted", "second.noted"]

    before = _head(db)
    session = db.sessions()
    try:
        record(session, actor="user:t", action="rolled.back", object_type="test", object_id=marker)
        session.rollback()
        session.commit()  # a later commit of the same session does not bring it back
    finally:
        session.close()
    assert _entries(db, marker) == ["first.noted", "second.noted"]
    assert _head(db) == before
    with db.transaction() as session:
        assert verify_chain(session).ok


def test_a_rolled_back_savepoint_drops_only_its_own_entries(db):
    marker = uuid.uuid4().hex
    with db.transaction() as session:
        record(session, actor="user:t", action="outer.kept", object_type="test", object_id=marker)
        savepoint = session.begin_nested()
        record(session, actor="user:t", action="inner.dropped", object_type="test", object_id=marker)
        savepoint.rollback()
        record(session, actor="user:t", action="after.kept", object_type="test", object_id=marker)
    assert _entries(db, marker) == ["outer.kept", "after.kept"]


def test_the_chain_head_is_free_until_the_commit(db):
    """A transaction that has noted an entry does not hold the head: another one appends and commits first."""
    marker = uuid.uuid4().hex
    slow = db.sessions()
    try:
        record(slow, actor="user:t", action="slow.noted", object_type="test", object_id=marker)
        with db.transaction() as quick:  # would wait for `slow` (and time out) if `slow` held the head
            record(quick, actor="user:t", action="quick.first", object_type="test", object_id=marker)
        slow.commit()
    finally:
        slow.close()
    assert _entries(db, marker) == ["quick.first", "slow.noted"]


def test_immediately_appends_at_once_and_returns_the_entry(db):
    marker = uuid.uuid4().hex
    with db.transaction() as session:
        event = record(session, actor="user:t", action="now.appended", object_type="test", object_id=marker,
                       immediately=True)
        assert event.seq == session.scalar(select(AuditChainHead.seq))
    assert _entries(db, marker) == ["now.appended"]


def test_a_batch_larger_than_one_statement_is_appended_whole_and_in_order(db):
    # 450 entries: two full INSERTs of 200 rows, then the last 50 with the head's new hash.
    marker = uuid.uuid4().hex
    actions = [f"bulk.{n:03d}" for n in range(450)]
    before = _head(db)
    with db.transaction() as session:
        record_many(session, [{"actor": "user:t", "action": action, "object_type": "test", "object_id": marker}
                              for action in actions])
    assert _entries(db, marker) == actions
    assert _head(db) == before + 450
    with db.transaction() as session:
        assert verify_chain(session).ok

"""The keyed chain and its signed checkpoints, on SQLite files with the in-memory checkpoint store.

The same checks against moto's Object Lock bucket and PostgreSQL, through the
`gateway audit` commands, are in tests/audit/test_tamper.py.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from gateway import migrate
from gateway.audit import chain
from gateway.audit.checkpointer import ChainBroken, Checkpointer
from gateway.audit.checkpoints import (
    CheckpointInvalid,
    name_for,
    new_checkpoint,
    parse,
    serialize,
    verify_trail,
)
from gateway.audit.models import AuditEvent
from gateway.audit.service import AuditUnavailable, record, verify_chain
from gateway.db import Database
from gateway.routing.housekeeping import Housekeeping
from gateway.storage import InMemoryCheckpointStore
from tests.audit.helpers import append, drop_append_only_triggers, fix_up_head

KEY = secrets.token_urlsafe(48)


@pytest.fixture(scope="module")
def migrated(tmp_path_factory):
    path = tmp_path_factory.mktemp("template") / "gateway.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def db(migrated, tmp_path):
    path = tmp_path / "gateway.db"
    shutil.copy(migrated, path)
    database = Database(f"sqlite:///{path}", audit_chain_key=KEY)
    yield database
    database.dispose()


@pytest.fixture
def store():
    return InMemoryCheckpointStore()


class FakeMonotonic:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_entries_are_hmacs_under_the_chain_key(db):
    append(db, 3)
    with db.transaction() as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
        assert verify_chain(session).ok
        assert not verify_chain(session, chain_key=secrets.token_urlsafe(48)).ok
    assert [e.scheme for e in events] == [2, 2, 2]
    # Not what anyone holding only the database could compute:
    first = events[0]
    body = chain.canonical(first.seq, first.at, {k: getattr(first, k) for k in (
        "actor", "org_id", "action", "object_type", "object_id", "result", "ip", "request_id")})
    assert first.hash != hashlib.sha256(first.prev_hash.encode() + b"\n" + body).hexdigest()
    assert first.hash == chain.entry_hash(2, first.prev_hash, body, chain.entry_key(KEY))


def test_without_a_chain_key_nothing_is_audited(db):
    keyless = Database(db.url)
    try:
        with pytest.raises(AuditUnavailable), keyless.transaction() as session:
            record(session, actor="user:x", action="auth.login")
        with keyless.transaction() as session:
            assert session.scalar(select(AuditEvent.seq)) is None
    finally:
        keyless.dispose()


def test_the_chain_key_never_enters_the_database(db, store):
    append(db, 4)
    Checkpointer(db, store, KEY).write()
    dump = "\n".join(db.engine.raw_connection().driver_connection.iterdump())
    for secret in (KEY, chain.entry_key(KEY).hex(), chain.checkpoint_key(KEY).hex()):
        assert secret not in dump
    assert "INSERT INTO \"audit_events\"" in dump  # the dump did include the trail


def test_checkpoints_are_signed_linked_and_written_only_when_there_is_something_new(db, store):
    checkpointer = Checkpointer(db, store, KEY)
    assert checkpointer.write().checkpoint is None  # an empty trail: nothing to sign
    append(db, 3)
    first = checkpointer.write()
    assert first.written and (first.checkpoint.number, first.checkpoint.seq) == (1, 3)
    assert not checkpointer.write().written
    append(db, 2)
    second = checkpointer.write().checkpoint
    assert (second.number, second.seq, second.prev) == (2, 5, first.checkpoint.digest())
    assert [s.name for s in store.list()] == [name_for(1), name_for(2)]
    stored = json.loads(store.get(name_for(2)))
    assert set(stored) == {"v", "kind", "number", "seq", "head", "at", "prev", "key", "mac"}

    append(db, 1)
    report = verify_trail(db, store, KEY)
    assert report.ok, report.problems
    assert (report.checked, report.checkpoints, report.unanchored) == (6, 2, 1)
    assert report.latest_checkpoint == second.summary()


def test_a_second_writer_links_to_the_first_ones_checkpoint(db, store):
    append(db, 2)
    one, two = Checkpointer(db, store, KEY), Checkpointer(db, store, KEY)
    assert one.write().checkpoint.number == 1
    append(db, 2)
    # `two` never saw checkpoint 1; it finds it in the store and links to it.
    assert two.write().checkpoint.number == 2
    append(db, 1)
    assert one.write().checkpoint.number == 3  # `one` had 1 cached; name 2 is found before writing
    assert verify_trail(db, store, KEY).ok


def test_parse_refuses_forged_altered_and_foreign_checkpoints():
    at = datetime(2026, 11, 30, tzinfo=UTC)
    checkpoint = new_checkpoint(KEY, previous=None, seq=7, head="a" * 64, at=at)
    assert parse(serialize(checkpoint), KEY) == checkpoint
    altered = json.loads(serialize(checkpoint))
    altered["seq"] = 3
    with pytest.raises(CheckpointInvalid, match="does not match its contents"):
        parse(json.dumps(altered).encode(), KEY)
    with pytest.raises(CheckpointInvalid, match="another chain key"):
        parse(serialize(new_checkpoint(secrets.token_urlsafe(48), previous=None, seq=7, head="a" * 64, at=at)), KEY)
    for junk in (b"not json", b"[]", b'{"kind": "something else"}'):
        with pytest.raises(CheckpointInvalid):
            parse(junk, KEY)


def _problems(db, store) -> list[str]:
    report = verify_trail(db, store, KEY)
    assert not report.ok
    return report.problems


def test_verify_reports_every_kind_of_meddling_with_the_checkpoints(db, store):
    checkpointer = Checkpointer(db, store, KEY)
    for _ in range(3):
        append(db, 2)
        checkpointer.write()
    store.overwrite(name_for(2), b"forged")
    store.mark_deleted(name_for(3))
    problems = _problems(db, store)
    assert any("checkpoint 2 was overwritten" in p for p in problems)
    assert any("checkpoint 3 was deleted" in p for p in problems)
    assert not any("differs" in p or "rolled back" in p for p in problems)  # the locked versions still anchor

    store.destroy(name_for(2))  # what Object Lock prevents; noticed anyway
    assert any("checkpoints 2..2 are missing" in p for p in _problems(db, store))


def test_verify_refuses_a_forged_or_shrinking_checkpoint(db, store):
    checkpointer = Checkpointer(db, store, KEY)
    append(db, 4)
    latest = checkpointer.write().checkpoint
    store.put(name_for(2), b'{"kind": "records-gateway/audit-checkpoint", "v": 1}')
    assert any("checkpoint 2 is malformed" in p for p in _problems(db, store))

    store.destroy(name_for(2))
    # Someone holding the key signs a checkpoint that takes the count back: checkpoints only grow.
    with db.transaction() as session:
        entry_2 = session.get(AuditEvent, 2)
    shrunk = new_checkpoint(KEY, previous=latest, seq=2, head=entry_2.hash, at=datetime.now(UTC))
    store.put(shrunk.name, serialize(shrunk))
    assert any("checkpoints only grow" in p for p in _problems(db, store))


def test_the_writer_refuses_to_sign_a_truncated_or_edited_chain(db, store):
    checkpointer = Checkpointer(db, store, KEY)
    append(db, 5)
    checkpointer.write()
    append(db, 2)
    with db.engine.begin() as connection:
        drop_append_only_triggers(connection)
        connection.execute(text("DELETE FROM audit_events WHERE seq >= 5"))
        fix_up_head(connection)
    with pytest.raises(ChainBroken) as broken:
        Checkpointer(db, store, KEY).write()
    assert any("checkpoint 1" in p and "holds 4" in p for p in broken.value.problems)
    assert len(store.list()) == 1


def test_the_writer_refuses_when_the_newest_checkpoint_is_not_ours(db, store):
    append(db, 2)
    store.put(name_for(1), serialize(new_checkpoint(secrets.token_urlsafe(48), previous=None, seq=2,
                                                    head="b" * 64, at=datetime.now(UTC))))
    with pytest.raises(ChainBroken, match="another chain key"):
        Checkpointer(db, store, KEY).write()


def test_cadence_every_n_entries_and_every_m_seconds(db, store):
    clock = FakeMonotonic()
    checkpointer = Checkpointer(db, store, KEY, every_entries=3, every_seconds=60, monotonic=clock)
    assert not checkpointer.due()
    append(db, 1)
    assert checkpointer.due()  # nothing was ever anchored: at once
    checkpointer.write()
    append(db, 2)
    assert not checkpointer.due()
    clock.now += 61
    assert checkpointer.due()
    clock.now -= 61
    append(db, 1)
    assert checkpointer.due()  # three entries since the checkpoint


def test_tick_works_in_the_background_and_survives_an_unavailable_store(db, store, caplog):
    clock = FakeMonotonic()
    checkpointer = Checkpointer(db, store, KEY, every_entries=1, every_seconds=60, monotonic=clock)
    append(db, 2)
    store.available = False
    checkpointer.tick()
    checkpointer.join(5)
    assert "audit checkpoint store unavailable" in caplog.text
    store.available = True
    checkpointer.tick()  # backing off after the failure
    checkpointer.join(5)
    assert store.list() == []
    clock.now += 61
    checkpointer.tick()
    checkpointer.join(5)
    assert [s.name for s in store.list()] == [name_for(1)]


def test_the_relays_housekeeping_ticks_the_checkpointer(db):
    class Recorder:
        ticks = 0

        def tick(self):
            self.ticks += 1

    class Dispatcher:
        def enqueue(self, *args, **kwargs):
            pass

    recorder = Recorder()
    Housekeeping(None, db, Dispatcher(), checkpointer=recorder).tick()
    assert recorder.ticks == 1


def test_verify_warns_when_no_checkpoint_exists_or_the_newest_is_stale(db, store):
    append(db, 2)
    report = verify_trail(db, store, KEY)
    assert report.ok and report.unanchored == 2
    assert any("no checkpoint has been written yet" in w for w in report.warnings)
    old = new_checkpoint(KEY, previous=None, seq=1, head=_hash_of(db, 1), at=datetime.now(UTC) - timedelta(hours=2))
    store.put(old.name, serialize(old))
    report = verify_trail(db, store, KEY, stale_after=timedelta(minutes=10))
    assert report.ok and any("is the relay" in w for w in report.warnings)


def _hash_of(db, seq: int) -> str:
    with db.transaction() as session:
        return session.get(AuditEvent, seq).hash


def test_entries_from_before_the_keyed_chain_still_verify(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url, "0008")
    legacy = Database(url)
    prev = chain.GENESIS
    with legacy.engine.begin() as connection:
        for seq in (1, 2, 3):  # what the code before 0009 wrote: unkeyed SHA-256
            at = datetime(2026, 11, 1, 12, 0, seq, tzinfo=UTC)
            fields = {"actor": f"user:{seq}", "org_id": None, "action": "auth.login", "object_type": None,
                      "object_id": None, "result": "success", "ip": None, "request_id": None}
            digest = chain.entry_hash(1, prev, chain.canonical(seq, at, fields), None)
            connection.execute(text(
                "INSERT INTO audit_events (seq, at, actor, action, result, prev_hash, hash) "
                "VALUES (:seq, :at, :actor, 'auth.login', 'success', :prev, :hash)"),
                {"seq": seq, "at": at.strftime("%Y-%m-%d %H:%M:%S.%f"), "actor": fields["actor"], "prev": prev,
                 "hash": digest})
            prev = digest
        connection.execute(text("UPDATE audit_chain_head SET seq = 3, last_hash = :h"), {"h": prev})
    legacy.dispose()

    migrate.upgrade(url)
    db = Database(url, audit_chain_key=KEY)
    try:
        append(db, 2)
        with db.transaction() as session:
            assert [e.scheme for e in session.scalars(select(AuditEvent).order_by(AuditEvent.seq))] == [1, 1, 1, 2, 2]
            assert verify_chain(session).ok
        # Someone without the key re-hashes a keyed entry the old way: refused.
        with db.engine.begin() as connection:
            drop_append_only_triggers(connection)
            event = connection.execute(text("SELECT * FROM audit_events WHERE seq = 5")).mappings().one()
        with db.transaction() as session:
            row = session.get(AuditEvent, 5)
            row.actor = "user:someone-else"
            row.scheme = 1
            row.hash = chain.entry_hash(1, row.prev_hash, chain.canonical(5, row.at, {
                k: getattr(row, k) for k in ("actor", "org_id", "action", "object_type", "object_id", "result",
                                             "ip", "request_id")}), None)
        with db.transaction() as session:
            problems = verify_chain(session).problems
        assert any("entry 5 carries an unkeyed hash after keyed entries" in p for p in problems)
        assert event["scheme"] == 2
    finally:
        db.dispose()

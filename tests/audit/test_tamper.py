"""Tampering with the audit trail, done as someone holding the database would, and `gateway audit verify`.

Each test migrates its own database (SQLite and PostgreSQL), writes entries as
the gateway does, writes checkpoints with `gateway audit checkpoint` into a
fresh Object Lock bucket on moto, tampers, and runs the real commands (click's
CliRunner with the settings in the environment, as a shell would).
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.engine import make_url

from gateway import migrate
from gateway.cli import audit as _audit_commands  # noqa: F401  (registers `gateway audit ...`)
from gateway.cli import main as gateway_cli
from gateway.db import Database
from gateway.settings import Settings
from tests.audit.helpers import append, drop_append_only_triggers, fix_up_head
from tests.fixtures.live import settings_environment
from tests.fixtures.logs import new_log_path
from tests.fixtures.s3 import MOTO_REGION


@dataclasses.dataclass
class Trail:
    settings: Settings
    db: Database

    def gateway(self, *args: str) -> tuple[int, dict]:
        """Run `gateway ARGS --json`; the exit code and the JSON it printed (stdout, else stderr)."""
        result = CliRunner().invoke(gateway_cli, [*args, "--json"], env=settings_environment(self.settings))
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, json.loads(result.stdout or result.stderr)

    def verify(self, *extra: str) -> tuple[int, dict]:
        return self.gateway("audit", "verify", *extra)

    def checkpoint(self) -> dict:
        code, data = self.gateway("audit", "checkpoint")
        assert code == 0, data
        return data

    def tamper(self, *statements: str) -> None:
        with self.db.engine.begin() as connection:
            drop_append_only_triggers(connection)
            for statement in statements:
                connection.execute(text(statement))

    def fix_up_head(self) -> None:
        with self.db.engine.begin() as connection:
            fix_up_head(connection)


@pytest.fixture
def trail(empty_database_any, checkpoint_bucket, tmp_path):
    migrate.upgrade(empty_database_any)
    settings = Settings.from_env(
        {}, env="test", data_dir=tmp_path / "data", database_url=empty_database_any,
        s3_endpoint_url=checkpoint_bucket.endpoint_url, s3_region=MOTO_REGION,
        audit_checkpoint_bucket=checkpoint_bucket.bucket, audit_checkpoint_retention_days=1, storage_timeout=3.0,
    )
    db = Database.from_settings(settings)
    yield Trail(settings, db)
    db.dispose()


def problems(result: tuple[int, dict]) -> str:
    code, report = result
    assert code == 1 and report["ok"] is False, report
    return "\n".join(report["problems"])


def test_an_untampered_trail_verifies(trail):
    append(trail.db, 6)
    written = trail.checkpoint()
    assert written["written"] and written["checkpoint"]["seq"] == 6
    append(trail.db, 2)
    code, report = trail.verify()
    assert code == 0, report
    assert (report["ok"], report["checked"], report["problems"]) == (True, 8, [])
    assert (report["checkpoints"], report["unanchored"], report["latest_checkpoint"]["number"]) == (1, 2, 1)
    assert trail.checkpoint()["checkpoint"]["number"] == 2  # a second checkpoint covers the two new entries
    code, report = trail.verify()
    assert (code, report["checkpoints"], report["unanchored"]) == (0, 2, 0)


def test_a_deleted_entry_is_found(trail):
    append(trail.db, 6)
    trail.checkpoint()
    trail.tamper("DELETE FROM audit_events WHERE seq = 3")
    assert "entries 3..3 are missing" in problems(trail.verify())


def test_a_truncated_tail_is_found_even_with_the_head_row_fixed_up(trail):
    append(trail.db, 8)
    trail.checkpoint()
    trail.tamper("DELETE FROM audit_events WHERE seq > 5")
    trail.fix_up_head()
    # The database alone is consistent again; that is exactly why the checkpoints live elsewhere.
    code, report = trail.verify("--database-only")
    assert code == 0 and any("cannot be ruled out" in w for w in report["warnings"])
    assert "checkpoint 1 (" in problems(trail.verify())
    assert "recorded 8 entries but the database holds 5" in problems(trail.verify())
    code, refused = trail.gateway("audit", "checkpoint")
    assert code == 1 and refused["error"]["code"] == "AUDIT_CHAIN_BROKEN"


def test_an_emptied_table_is_found(trail):
    append(trail.db, 5)
    trail.checkpoint()
    trail.tamper("DELETE FROM audit_events")
    trail.fix_up_head()
    found = problems(trail.verify())
    assert "recorded 5 entries but the database holds 0" in found


def test_an_edited_entry_is_found(trail):
    append(trail.db, 5)
    trail.checkpoint()
    trail.tamper("UPDATE audit_events SET actor = 'user:someone-else' WHERE seq = 3")
    assert "entry 3 was altered" in problems(trail.verify())


def test_a_trail_rewritten_without_the_key_is_found(trail):
    """Edit an entry, then re-hash the whole chain the unkeyed way so every link holds again."""
    from gateway.audit import chain
    from gateway.audit.models import AuditEvent
    from gateway.audit.service import _fields

    append(trail.db, 5)
    trail.checkpoint()
    trail.tamper("SELECT 1")  # triggers dropped
    with trail.db.transaction() as session:
        prev = chain.GENESIS
        for event in session.query(AuditEvent).order_by(AuditEvent.seq):
            if event.seq == 2:
                event.actor = "user:someone-else"
            event.scheme, event.prev_hash = 1, prev
            event.hash = prev = chain.entry_hash(1, prev, chain.canonical(event.seq, event.at, _fields(event)), None)
    trail.fix_up_head()
    assert trail.verify("--database-only")[0] == 0  # consistent on its own (all "legacy" now)...
    found = problems(trail.verify())  # ...but not what the signed checkpoint recorded
    assert "entry 5 differs from checkpoint 1" in found


def test_reordered_entries_are_found(trail):
    append(trail.db, 5)
    trail.checkpoint()
    trail.tamper(
        "UPDATE audit_events SET seq = 100 WHERE seq = 3",
        "UPDATE audit_events SET seq = 3 WHERE seq = 4",
        "UPDATE audit_events SET seq = 4 WHERE seq = 100",
    )
    found = problems(trail.verify())
    assert "entry 3 does not link" in found or "entry 3 was altered" in found


def _copy_sqlite(source: str, target: str) -> None:
    # SQLite's online backup: a consistent copy whatever sits in the WAL, safe with connections open.
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()


def _snapshot(trail: Trail, where: Path) -> None:
    """An earlier copy of the audit tables: the whole SQLite file, or on PostgreSQL copies of the two tables."""
    if trail.db.is_sqlite:
        _copy_sqlite(make_url(trail.db.url).database, str(where))
    else:
        with trail.db.engine.begin() as connection:
            connection.execute(text("CREATE TABLE old_events AS SELECT * FROM audit_events"))
            connection.execute(text("CREATE TABLE old_head AS SELECT * FROM audit_chain_head"))


def _restore(trail: Trail, where: Path) -> None:
    if trail.db.is_sqlite:
        trail.db.dispose()
        _copy_sqlite(str(where), make_url(trail.db.url).database)
    else:
        trail.tamper(
            "DELETE FROM audit_events",
            "INSERT INTO audit_events SELECT * FROM old_events",
            "UPDATE audit_chain_head SET seq = o.seq, last_hash = o.last_hash FROM old_head o "
            "WHERE audit_chain_head.id = o.id",
        )


def test_a_roll_back_to_an_earlier_copy_is_found(trail, tmp_path):
    append(trail.db, 4)
    trail.checkpoint()
    _snapshot(trail, tmp_path / "earlier.db")
    append(trail.db, 4)
    assert trail.checkpoint()["checkpoint"]["seq"] == 8
    _restore(trail, tmp_path / "earlier.db")

    assert trail.verify("--database-only")[0] == 0  # the old copy is a perfectly good chain
    assert "checkpoint 2 (" in problems(trail.verify())
    assert "recorded 8 entries but the database holds 4" in problems(trail.verify())

    # Life goes on on the old copy: more entries than the checkpoint, but a different history.
    append(trail.db, 6)
    found = problems(trail.verify())
    assert "entry 8 differs from checkpoint 2" in found
    code, refused = trail.gateway("audit", "checkpoint")
    assert code == 1 and refused["error"]["code"] == "AUDIT_CHAIN_BROKEN"


def test_unreadable_checkpoints_fail_the_check(trail):
    append(trail.db, 2)
    trail.settings = dataclasses.replace(trail.settings, audit_checkpoint_bucket="no-such-audit-bucket")
    assert "checkpoints could not be read" in problems(trail.verify())


def test_the_relay_writes_checkpoints_while_it_runs(trail, redis_service, checkpoint_bucket):
    import os
    import subprocess
    import sys
    import time

    settings = dataclasses.replace(trail.settings, redis_url=redis_service.url, audit_checkpoint_every_seconds=1)
    append(trail.db, 3)
    log = new_log_path("relay").open("wb")  # read at the end of the suite (tests/test_zz_logs_hold_no_phi.py)
    relay = subprocess.Popen([str(Path(sys.executable).parent / "gateway"), "outbox", "relay"],
                             env={**os.environ, **settings_environment(settings)},
                             stdout=log, stderr=subprocess.STDOUT)
    log.close()  # the relay has its own copy of the descriptor
    try:
        store, deadline = checkpoint_bucket.store(), time.monotonic() + 60
        while time.monotonic() < deadline and not store.list():
            time.sleep(0.2)
        append(trail.db, 2)
        while time.monotonic() < deadline and len(store.list()) < 2:
            time.sleep(0.2)
    finally:
        relay.terminate()
        relay.wait(timeout=30)
    assert [json.loads(store.get(s.name))["seq"] for s in store.list()] == [3, 5]
    code, report = trail.verify()
    assert (code, report["checkpoints"], report["unanchored"]) == (0, 2, 0)

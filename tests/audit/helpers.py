"""What the audit tests share: appending entries, and what a DBA could do to the tables."""

from __future__ import annotations

from sqlalchemy import text

from gateway.audit.service import record


def append(db, count: int, *, actor: str = "user:test") -> None:
    """Append `count` entries, one transaction each (ids and codes only, as the gateway writes them)."""
    for i in range(count):
        with db.transaction() as session:
            record(session, actor=f"{actor}-{i}", action="auth.login", ip="127.0.0.1", object_type="user",
                   object_id=f"u-{i}")


def drop_append_only_triggers(connection) -> None:
    """What a DBA with full privileges could do; the application role never can."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("DROP TRIGGER IF EXISTS audit_events_no_update ON audit_events"))
        connection.execute(text("DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events"))
    else:
        connection.execute(text("DROP TRIGGER IF EXISTS audit_events_no_update"))
        connection.execute(text("DROP TRIGGER IF EXISTS audit_events_no_delete"))


def fix_up_head(connection) -> None:
    """Point the chain-head row at whatever entry is now last, as someone hiding a truncation would."""
    last = connection.execute(text("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")).one_or_none()
    seq, last_hash = last if last else (0, "0" * 64)
    connection.execute(text("UPDATE audit_chain_head SET seq = :seq, last_hash = :hash WHERE id = 1"),
                       {"seq": seq, "hash": last_hash})

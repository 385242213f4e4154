"""Appending to, verifying and reading the hash-chained audit trail.

Each entry stores the hash of the one before it, so an edited, inserted or
deleted row breaks the chain and `gateway audit verify` names where.  Appends
take the single chain-head row with an UPDATE first: that row lock (a write
lock on SQLite) serialises writers, so two concurrent appends can never fork
the chain.  Entries hold ids and codes only — never PHI.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gateway.audit.models import AuditChainHead, AuditEvent
from gateway.db import Database, utcnow
from gateway.errors import ServiceUnavailable

log = logging.getLogger("gateway.audit")

GENESIS = "0" * 64
RESULTS = ("success", "failure", "denied", "blocked")


class AuditUnavailable(ServiceUnavailable):
    """The audit entry could not be written, so the action it guards must not happen (503)."""

    code = "AUDIT_UNAVAILABLE"
    title = "Audit trail unavailable"


def _canonical(seq: int, at: datetime, fields: dict) -> bytes:
    """The exact bytes an entry's hash covers; stable across databases."""
    body = {"seq": seq, "at": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), **fields}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _entry_hash(prev_hash: str, canonical: bytes) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical).hexdigest()


def _fields(event: AuditEvent) -> dict:
    return {"actor": event.actor, "org_id": event.org_id, "action": event.action,
            "object_type": event.object_type, "object_id": event.object_id,
            "result": event.result, "ip": event.ip, "request_id": event.request_id}


def record(session: Session, *, actor: str, action: str, result: str = "success",
           org_id: str | None = None, object_type: str | None = None, object_id: str | None = None,
           ip: str | None = None, request_id: str | None = None) -> AuditEvent:
    """Append one entry inside the caller's transaction (it commits or rolls back with the action)."""
    if result not in RESULTS:
        raise ValueError(f"unknown audit result {result!r}")
    head = session.execute(
        update(AuditChainHead).where(AuditChainHead.id == 1)
        .values(seq=AuditChainHead.seq + 1)
        .returning(AuditChainHead.seq, AuditChainHead.last_hash)
    ).one_or_none()
    if head is None:
        raise AuditUnavailable("The audit trail's chain head is missing; nothing can be audited.")
    seq, prev_hash = head
    # Microseconds are the finest both databases keep, so the hash re-computes identically.
    at = utcnow()
    event = AuditEvent(seq=seq, at=at, actor=actor, org_id=org_id, action=action,
                       object_type=object_type, object_id=object_id, result=result, ip=ip,
                       request_id=request_id, prev_hash=prev_hash)
    event.hash = _entry_hash(prev_hash, _canonical(seq, at, _fields(event)))
    session.add(event)
    session.execute(update(AuditChainHead).where(AuditChainHead.id == 1).values(last_hash=event.hash))
    session.flush()
    return event


def record_now(db: Database, **entry) -> None:
    """Append one entry in its own committed transaction; raise AuditUnavailable if that fails."""
    try:
        with db.transaction() as session:
            record(session, **entry)
    except Exception as error:
        log.error("audit write failed", extra={"action": entry.get("action"),
                                               "exception_type": type(error).__name__})
        raise AuditUnavailable("The audit trail could not be written; the action was not performed.") from error


@dataclass
class VerifyReport:
    """What `gateway audit verify` found."""

    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the chain is intact end to end."""
        return not self.problems


def verify_chain(session: Session, *, max_problems: int = 50) -> VerifyReport:
    """Recompute every hash in order and compare links, positions and the chain head."""
    report = VerifyReport()
    expected_seq, prev_hash = 1, GENESIS

    def problem(text: str) -> None:
        if len(report.problems) < max_problems:
            report.problems.append(text)

    rows = session.scalars(select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=1000))
    for event in rows:
        report.checked += 1
        if event.seq != expected_seq:
            problem(f"entries {expected_seq}..{event.seq - 1} are missing (deleted)")
        if event.prev_hash != prev_hash:
            problem(f"entry {event.seq} does not link to the entry before it")
        if _entry_hash(event.prev_hash, _canonical(event.seq, event.at, _fields(event))) != event.hash:
            problem(f"entry {event.seq} was altered (its hash does not match its contents)")
        expected_seq, prev_hash = event.seq + 1, event.hash
    head = session.get(AuditChainHead, 1)
    if head is None:
        problem("the chain head row is missing")
    else:
        if head.seq != expected_seq - 1:
            problem(f"the chain head says {head.seq} entries but {expected_seq - 1} end the chain "
                    "(entries deleted from the end?)")
        if head.last_hash != prev_hash:
            problem("the chain head's hash does not match the last entry")
    return report



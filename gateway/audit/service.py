"""Appending to, verifying and reading the hash-chained audit trail.

Each entry stores the hash of the one before it, so an edited, inserted or
deleted row breaks the chain and `gateway audit verify` names where.  Entry
hashes are HMAC-SHA256 under a key from settings that never enters the database
(gateway.audit.chain), so someone holding only the database cannot recompute
them after a change.  What the chain alone cannot show — its newest entries
removed together with the head row, an emptied table, the tables rolled back
to an older copy — the signed checkpoints kept outside the database show
(gateway.audit.checkpoints).

Appends take the single chain-head row with an UPDATE first: that row lock (a
write lock on SQLite) serialises writers, so two concurrent appends can never
fork the chain.  Nothing here does network I/O, so the lock is never held
across it.  Entries hold ids and codes only — never PHI.

The head is taken as late as possible: `record` only notes the entry on the
session, and the transaction's commit appends everything it noted, in one
batch, as its last statements (`_append_noted`, a `before_commit` hook).  The
chain-head lock is then held for the commit alone, not from the action's first
audit to its end, which is what every writer of the whole system queues on.
An entry is still written if and only if its transaction commits; a failed
append fails the commit, so the action does not happen (AuditUnavailable).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from gateway.audit import chain
from gateway.audit.chain import GENESIS, KEYED_SCHEME, LEGACY_SCHEME, SCHEMES
from gateway.audit.models import AuditChainHead, AuditEvent
from gateway.db import AUDIT_CHAIN_KEY_INFO, Database, utcnow
from gateway.errors import ServiceUnavailable

log = logging.getLogger("gateway.audit")

__all__ = ["GENESIS", "RESULTS", "Anchor", "AuditUnavailable", "VerifyReport", "chain_key_of", "record",
           "record_many", "record_now", "verify_chain"]

RESULTS = ("success", "failure", "denied", "blocked")


class AuditUnavailable(ServiceUnavailable):
    """The audit entry could not be written, so the action it guards must not happen (503)."""

    code = "AUDIT_UNAVAILABLE"
    title = "Audit trail unavailable"


def chain_key_of(session: Session) -> str | None:
    """The audit chain key the session's Database was built with (None without one)."""
    return session.info.get(AUDIT_CHAIN_KEY_INFO)


def _fields(event: AuditEvent) -> dict:
    return {"actor": event.actor, "org_id": event.org_id, "action": event.action,
            "object_type": event.object_type, "object_id": event.object_id,
            "result": event.result, "ip": event.ip, "request_id": event.request_id}


def computed_hash(event: AuditEvent, key: bytes | None) -> str:
    """What the entry's hash must be, from its contents and its scheme."""
    return chain.entry_hash(event.scheme, event.prev_hash, chain.canonical(event.seq, event.at, _fields(event)), key)


def record(session: Session, *, actor: str, action: str, result: str = "success",
           org_id: str | None = None, object_type: str | None = None, object_id: str | None = None,
           ip: str | None = None, request_id: str | None = None, immediately: bool = False) -> AuditEvent | None:
    """Audit an action inside the caller's transaction: appended when it commits, gone if it rolls back.

    `immediately` appends now (with whatever the transaction noted before) and returns the entry, for a
    caller that needs its `seq`; it holds the chain head from then to the commit."""
    entry = _entry(session, actor=actor, action=action, result=result, org_id=org_id, object_type=object_type,
                   object_id=object_id, ip=ip, request_id=request_id)
    if immediately:
        return _append(session, [*_take_noted(session), entry])[-1]
    _note(session, [entry])
    return None


def record_many(session: Session, entries: Sequence[Mapping]) -> None:
    """Audit several actions, in order, inside the caller's transaction (appended with its commit)."""
    _note(session, [_entry(session, **entry) for entry in entries])


_NOTED = "gateway.audit_noted"  # session.info: [(nested transaction or None, entry)] awaiting the commit


def _entry(session: Session, *, actor: str, action: str, result: str = "success", org_id: str | None = None,
           object_type: str | None = None, object_id: str | None = None, ip: str | None = None,
           request_id: str | None = None) -> dict:
    if result not in RESULTS:
        raise ValueError(f"unknown audit result {result!r}")
    if not chain_key_of(session):
        raise AuditUnavailable("No audit chain key is configured; nothing can be audited.")
    return {"actor": actor, "org_id": org_id, "action": action, "object_type": object_type,
            "object_id": object_id, "result": result, "ip": ip, "request_id": request_id}


def _note(session: Session, entries: list[dict]) -> None:
    session.connection()  # the transaction has begun, so its end (commit or not) is seen by the hooks below
    nested = session.get_nested_transaction()
    session.info.setdefault(_NOTED, []).extend((nested, entry) for entry in entries)


def _take_noted(session: Session) -> list[dict]:
    return [entry for _nested, entry in session.info.pop(_NOTED, [])]


@sa_event.listens_for(Session, "before_commit")
def _append_noted(session: Session) -> None:
    """The commit's last statements: the entries its transaction noted, appended to the chain in one batch."""
    entries = _take_noted(session)
    if entries:
        _append(session, entries)


@sa_event.listens_for(Session, "after_soft_rollback")
def _forget_savepoint(session: Session, previous_transaction) -> None:
    """A rolled-back savepoint's entries are never appended (the others of its transaction still are)."""
    noted = session.info.get(_NOTED)
    if noted and previous_transaction.nested:
        session.info[_NOTED] = [(nested, entry) for nested, entry in noted if nested is not previous_transaction]


@sa_event.listens_for(Session, "after_transaction_end")
def _forget_noted(session: Session, transaction) -> None:
    """A transaction that ends without its commit's append (rolled back, closed) takes its entries with it."""
    if transaction.parent is None and not transaction.nested:
        session.info.pop(_NOTED, None)


def _append(session: Session, entries: list[dict]) -> list[AuditEvent]:
    """Take the chain head once and link `entries` to it, in order.

    From the head's UPDATE to the commit every other writer waits, so little happens in between: on
    PostgreSQL the entries and the new head hash go in one statement (the INSERT as a CTE of the UPDATE),
    and nothing passes through the ORM's unit of work."""
    key = chain.entry_key(chain_key_of(session))
    session.flush()  # the transaction's own pending writes go first, before the head is held
    head = session.execute(_TAKE_HEAD, {"count": len(entries)}).one_or_none()
    if head is None:
        raise AuditUnavailable("The audit trail's chain head is missing; nothing can be audited.")
    last_seq, prev_hash = head
    events = []
    for seq, entry in enumerate(entries, start=last_seq - len(entries) + 1):
        # Microseconds are the finest both databases keep, so the hash re-computes identically.
        event = AuditEvent(seq=seq, at=utcnow(), prev_hash=prev_hash, scheme=KEYED_SCHEME, **entry)
        event.hash = prev_hash = computed_hash(event, key)
        events.append(event)
    dialect = session.get_bind().dialect
    rows = [{column: getattr(event, column) for column in _COLUMNS} for event in events]
    # Statements built once per batch size (see _statements): compiling a fresh multi-row INSERT took
    # milliseconds of Python while every other writer waited on the head.
    for start in range(0, len(rows) - _ROWS_PER_STATEMENT, _ROWS_PER_STATEMENT):  # very large batches only
        session.execute(_statements(dialect, _ROWS_PER_STATEMENT, with_head=False)[0],
                        _numbered(rows[start:start + _ROWS_PER_STATEMENT]))
    last = rows[len(rows) - ((len(rows) - 1) % _ROWS_PER_STATEMENT + 1):]
    for statement in _statements(dialect, len(last), with_head=True):
        session.execute(statement, {**_numbered(last), "last_hash": prev_hash})
    return events


# Built once: a Core statement on the table (not the ORM entity) skips the ORM's bulk-update machinery.
_HEAD = AuditChainHead.__table__
_TAKE_HEAD = (update(_HEAD).where(_HEAD.c.id == 1)
              .values(seq=_HEAD.c.seq + bindparam("count", type_=_HEAD.c.seq.type))
              .returning(_HEAD.c.seq, _HEAD.c.last_hash))

_ROWS_PER_STATEMENT = 200  # 13 parameters a row, far below either database's limit on one statement


def _numbered(rows: list[dict]) -> dict:
    """One statement's parameters: each row's columns suffixed with its place (0, 1, …)."""
    return {f"{column}_{n}": value for n, row in enumerate(rows) for column, value in row.items()}


@functools.lru_cache(maxsize=256)
def _statements(dialect, count: int, *, with_head: bool) -> tuple:
    """The statements appending `count` entries (and, `with_head`, setting the head's new hash).

    Textual, with each parameter typed by its column (timestamps keep their UTC handling), so each is
    compiled once and cached.  On PostgreSQL the INSERT rides in the head's UPDATE as a CTE: one
    statement; SQLite has no INSERT inside WITH (and its one writer holds the whole database anyway)."""
    quote = dialect.identifier_preparer.quote
    table = AuditEvent.__table__
    values = ", ".join("(" + ", ".join(f":{column}_{n}" for column in _COLUMNS) + ")" for n in range(count))
    # Only the model's own table and column names go into the text; every value is a bound parameter.
    rows = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(column) for column in _COLUMNS)}) "  # noqa: S608
            f"VALUES {values}")
    binds = [bindparam(f"{column}_{n}", type_=table.c[column].type) for n in range(count) for column in _COLUMNS]
    if not with_head:
        return (text(rows).bindparams(*binds),)
    head = (f"UPDATE {quote(AuditChainHead.__tablename__)} SET {quote('last_hash')} = :last_hash "  # noqa: S608
            f"WHERE {quote('id')} = 1")
    last_hash = bindparam("last_hash", type_=AuditChainHead.__table__.c.last_hash.type)
    if dialect.name == "postgresql":
        return (text(f"WITH appended AS ({rows}) {head}").bindparams(*binds, last_hash),)
    return text(rows).bindparams(*binds), text(head).bindparams(last_hash)


_COLUMNS = ("seq", "at", "actor", "org_id", "action", "object_type", "object_id", "result", "ip", "request_id",
            "prev_hash", "hash", "scheme")


def record_now(db: Database, **entry) -> None:
    """Append one entry in its own committed transaction; raise AuditUnavailable if that fails."""
    try:
        with db.transaction() as session:
            record(session, **entry)
    except Exception as error:
        log.error("audit write failed", extra={"action": entry.get("action"),
                                               "exception_type": type(error).__name__})
        raise AuditUnavailable("The audit trail could not be written; the action was not performed.") from error


@dataclass(frozen=True)
class Anchor:
    """What a signed checkpoint says the chain held: `seq` entries, the last with hash `head`."""

    number: int
    seq: int
    head: str
    at: str


@dataclass
class VerifyReport:
    """What `gateway audit verify` found."""

    checked: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Where the chain in the database ends.
    last_seq: int = 0
    last_hash: str = GENESIS
    # The signed checkpoints read from outside the database, the newest of them, and how many entries
    # are newer than it (only those could go missing unnoticed).
    checkpoints: int = 0
    latest_checkpoint: dict | None = None
    unanchored: int = 0
    # Entries hashed with the unkeyed scheme of the code before migration 0009.
    legacy_entries: int = 0
    max_problems: int = 50

    @property
    def ok(self) -> bool:
        """True when the chain is intact end to end."""
        return not self.problems

    def problem(self, text: str) -> None:
        """Note a problem (the first `max_problems` are kept; any one fails the check)."""
        if len(self.problems) < self.max_problems:
            self.problems.append(text)
        elif len(self.problems) == self.max_problems:
            self.problems.append("... more problems not shown")

    def as_dict(self) -> dict:
        """The report as `gateway audit verify --json` prints it."""
        return {"ok": self.ok, "checked": self.checked, "problems": self.problems, "warnings": self.warnings,
                "last_seq": self.last_seq, "checkpoints": self.checkpoints,
                "latest_checkpoint": self.latest_checkpoint, "unanchored": self.unanchored,
                "legacy_entries": self.legacy_entries}


def verify_chain(session: Session, *, max_problems: int = 50, chain_key: str | None = None,
                 anchors: Mapping[int, Sequence[Anchor]] | None = None, since: int = 1,
                 report: VerifyReport | None = None) -> VerifyReport:
    """Recompute every hash from entry `since` on and compare links, positions, schemes, head row and `anchors`.

    With `since` > 1 (a writer checking what is new since its last checkpoint) the
    entry at `since` is taken on the anchor's word and the head row is not checked.
    """
    report = report or VerifyReport(max_problems=max_problems)
    chain_key = chain_key or chain_key_of(session)
    key = chain.entry_key(chain_key) if chain_key else None
    anchors = anchors or {}
    # The head row first: entries only grow, so appends during the scan cannot look like a truncation.
    head = session.get(AuditChainHead, 1) if since <= 1 else None
    head_hash = GENESIS if head is not None and head.seq == 0 else None
    expected_seq, prev_hash, keyed_seen, first = max(since, 1), GENESIS, False, True

    query = select(AuditEvent).where(AuditEvent.seq >= since).order_by(AuditEvent.seq)
    for event in session.scalars(query.execution_options(yield_per=1000)):
        report.checked += 1
        if event.seq != expected_seq:
            report.problem(f"entries {expected_seq}..{event.seq - 1} are missing (deleted)")
        if since > 1 and first:
            prev_hash = event.prev_hash  # vouched for by the anchor at `since`, checked below
        first = False
        if event.prev_hash != prev_hash:
            report.problem(f"entry {event.seq} does not link to the entry before it")
        if event.scheme not in SCHEMES:
            report.problem(f"entry {event.seq} names an unknown hash scheme {event.scheme!r}")
        elif event.scheme == LEGACY_SCHEME and keyed_seen:
            report.problem(f"entry {event.seq} carries an unkeyed hash after keyed entries "
                           "(re-hashed by someone without the chain key)")
        elif event.scheme == KEYED_SCHEME and key is None:
            report.problem(f"entry {event.seq} cannot be checked: no audit chain key is configured")
        elif computed_hash(event, key) != event.hash:
            report.problem(f"entry {event.seq} was altered (its hash does not match its contents)")
        keyed_seen = keyed_seen or event.scheme == KEYED_SCHEME
        report.legacy_entries += event.scheme == LEGACY_SCHEME
        for anchor in anchors.get(event.seq, ()):
            if anchor.head != event.hash:
                report.problem(f"entry {event.seq} differs from checkpoint {anchor.number} ({anchor.at}): "
                               "the audit trail was rewritten or rolled back to an earlier copy")
        if head is not None and event.seq == head.seq:
            head_hash = event.hash
        expected_seq, prev_hash = event.seq + 1, event.hash
    report.last_seq, report.last_hash = expected_seq - 1, prev_hash
    if since > 1 and first:  # nothing from `since` on: say where the chain really ends
        report.last_seq = session.scalar(select(func.max(AuditEvent.seq))) or 0
    for seq in sorted(s for s in anchors if s > report.last_seq):
        for anchor in anchors[seq]:
            report.problem(f"checkpoint {anchor.number} ({anchor.at}) recorded {seq} entries but the database "
                           f"holds {report.last_seq}: the newest entries were removed or the audit tables "
                           "were rolled back to an earlier copy")
    if since > 1:
        return report
    if head is None:
        report.problem("the chain head row is missing")
    elif head.seq > report.last_seq:
        report.problem(f"the chain head says {head.seq} entries but {report.last_seq} end the chain "
                       "(entries deleted from the end?)")
    elif head.last_hash != head_hash:
        report.problem(f"the chain head's hash does not match entry {head.seq}")
    return report

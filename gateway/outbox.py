"""The transactional outbox: what a change must cause later, written in the same transaction as the change.

Two kinds of rows, both about one request:
- `route`: put the request on an RQ queue (a facility queue or a review queue);
- `notify`: an event for the requester: fanned out by the relay to the
  subscribed webhooks and, as e-mail, to the organization's portal users.

The request lifecycle (`gateway.intake.lifecycle`) writes them with the status
change, its timeline event and its audit entry, so work and notifications are
never lost when Redis is down and never published for a change that rolled
back.  Relays (`gateway.routing.relay`) claim due rows with a lease — one
UPDATE, atomic on SQLite's single writer and `SKIP LOCKED` on PostgreSQL — so
two relays never publish the same row, and a relay that dies mid-batch leaves
rows that become due again when the lease runs out.  A row published twice
(relay killed between publish and mark-sent) is harmless: consumers
deduplicate (jobs on their step, webhook fan-out on the event id).

This module is shared infrastructure (like `idempotency`): intake writes rows,
routing reads them, and neither imports the other for it.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, bindparam, or_, select, text, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from gateway.db import Base, Database, UTCDateTime, picked_once, utcnow

LEASE = timedelta(seconds=60)
ROUTE, NOTIFY = "route", "notify"
# PostgreSQL channel a commit that wrote outbox rows notifies (relays LISTEN on it; see gateway.routing.relay).
CHANNEL = "gateway_outbox"
_NOTIFIED = "gateway.outbox_notified"  # session.info: the transaction that already notified
# Sent routes not yet seen handed over (`sent_at` is set when, and only when, a row is marked sent).  Spelt
# with literals, as the partial index is: a statement binding them as parameters may get a generic plan on
# PostgreSQL, which cannot use the index.  No `state = 'sent'` term: SQLite's planner would take it to
# ix_outbox_due and walk every sent row there is; `sent_at <= ?` in a look implies `sent_at IS NOT NULL`.
_UNSETTLED = text("kind = 'route' AND settled_at IS NULL AND sent_at IS NOT NULL")
UNSETTLED_ROUTE = text("outbox.kind = 'route' AND outbox.settled_at IS NULL AND outbox.sent_at IS NOT NULL")


class OutboxMessage(Base):
    """Work or a notification to publish, written in the same transaction as the change that caused it."""

    __tablename__ = "outbox"
    # ix_outbox_unsettled: the relay's look for route jobs the broker lost reads only the routes it has not seen
    # handed over yet (routing.reconcile), whatever the outbox's history holds.
    __table_args__ = (Index("ix_outbox_due", "state", "next_attempt_at"),
                      Index("ix_outbox_unsettled", "id", postgresql_where=_UNSETTLED, sqlite_where=_UNSETTLED))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), index=True)
    kind: Mapped[str] = mapped_column(String(12), default=ROUTE, server_default=ROUTE)
    queue: Mapped[str | None] = mapped_column(String(80))
    at_front: Mapped[bool] = mapped_column(Boolean, default=False)
    # A notify row's event: {"org_id", "type", "data", "actor"?} (ids, statuses and codes only).
    payload: Mapped[dict | None] = mapped_column(JSON)
    # pending → claimed (by one relay, until claim_expires_at) → sent.
    state: Mapped[str] = mapped_column(String(12), default="pending")
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    claim_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(String(120))
    job_id: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A sent route whose effect (its JobEffect) the relay's look has seen recorded: looked at no more.
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def step(self) -> str:
        """What a consumer deduplicates on: this message, whichever job delivers it (`claim` spells it too)."""
        return f"{self.queue}#{self.id}"


@dataclass(frozen=True)
class Claimed:
    """A row one relay now owns until its lease expires."""

    id: int
    request_id: str
    kind: str
    queue: str | None
    at_front: bool
    step: str
    payload: dict | None


def add_route(session: Session, *, request_id: str, queue: str, at_front: bool = False) -> OutboxMessage:
    """Queue routing work for a request inside the caller's transaction."""
    message = OutboxMessage(request_id=request_id, kind=ROUTE, queue=queue, at_front=at_front, state="pending",
                            next_attempt_at=utcnow())
    session.add(message)  # inserted with the transaction's other rows, by the flush before its commit
    wake_relays(session)
    return message


def add_notification(session: Session, *, request_id: str, org_id: str, event_type: str,
                     data: dict, actor: str | None = None) -> OutboxMessage:
    """Queue a webhook event about a request inside the caller's transaction (ids and codes only).

    `actor` (who caused it, `user:<id>`…) stays out of the webhook; the fan-out uses it so that a person
    is not e-mailed about what they did themselves.
    """
    payload = {"org_id": org_id, "type": event_type, "data": data, **({"actor": actor} if actor else {})}
    message = OutboxMessage(request_id=request_id, kind=NOTIFY, payload=payload,
                            state="pending", next_attempt_at=utcnow())
    # Inserted with the transaction's other rows, by the flush before its commit (the ORM keeps the order
    # rows were added in, so a request's events keep theirs): a flush of its own took a unit of work's
    # bookkeeping per notification, on SQLite while every other writer waits.
    session.add(message)
    # No NOTIFY: notifications are fanned out by the relay's polling companion (a webhook or an e-mail a
    # poll interval later is on time), and a NOTIFY per notification would wake the route loop for rows it
    # does not take — three empty claims per submission under load.
    return message


def wake_relays(session: Session) -> None:
    """On PostgreSQL, NOTIFY the relays' route loops in this transaction: delivered when it commits, never if it
    rolls back, so a relay woken by it finds the row.  Once per transaction (the server would fold repeats
    anyway); no-op on SQLite, whose relay keeps polling."""
    if session.get_bind().dialect.name != "postgresql":
        return
    transaction = session.get_transaction()
    if session.info.get(_NOTIFIED) is transaction:
        return
    session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})
    session.info[_NOTIFIED] = transaction


def claim(db: Database, *, relay: str, limit: int, now: datetime | None = None,
          lease: timedelta = LEASE, kinds: tuple[str, ...] | None = None) -> list[Claimed]:
    """Take up to `limit` due rows (of `kinds`, default all) for this relay, oldest first."""
    now = now or utcnow()
    token = f"{relay}:{uuid.uuid4().hex[:12]}"[:80]  # this call's claims, told apart from any other's
    with db.transaction() as session:
        rows = session.execute(_claim_statement(None if kinds is None else tuple(kinds), not db.is_sqlite),
                               {"now": now, "limit": limit, "token": token, "expires": now + lease}).all()
        return [Claimed(r.id, r.request_id, r.kind, r.queue, r.at_front, f"{r.queue}#{r.id}", r.payload)
                for r in sorted(rows, key=lambda row: row.id)]


@functools.lru_cache(maxsize=8)
def _claim_statement(kinds: tuple[str, ...] | None, postgresql: bool):
    """The claim, built once per `kinds`: due rows, oldest first, taken with their lease in one UPDATE that
    hands them back (RETURNING), skipping rows another relay has locked (PostgreSQL; SQLite has one writer).

    Built on the table, not the mapped class, with the moment, the limit and the claim as parameters: the
    relay claims up to twenty times a second even when idle, and building the expression and running it
    through the ORM's bulk-update machinery each time cost 3 ms of CPU a claim (60 ms a second idle)."""
    table = OutboxMessage.__table__
    now = bindparam("now", type_=table.c.next_attempt_at.type)
    due = or_((table.c.state == "pending") & (table.c.next_attempt_at <= now),
              (table.c.state == "claimed") & (table.c.claim_expires_at <= now))
    if kinds is not None:
        due = due & table.c.kind.in_(kinds)
    due_ids = (select(table.c.id).where(due).order_by(table.c.id).limit(bindparam("limit", type_=Integer()))
               .with_for_update(skip_locked=True))
    return (update(table).where(picked_once(table, due_ids, postgresql=postgresql), due)
            .values(state="claimed", claimed_by=bindparam("token", type_=table.c.claimed_by.type),
                    claim_expires_at=bindparam("expires", type_=table.c.claim_expires_at.type))
            .returning(table.c.id, table.c.request_id, table.c.kind, table.c.queue, table.c.at_front,
                       table.c.payload))


# Built once, on the table: the relay marks every pass's rows while SQLite's other writers wait, and building a
# fresh expression and running it through the ORM's bulk-update machinery cost more than the statement.
_MARK_SENT = (update(OutboxMessage.__table__)
              .where(OutboxMessage.__table__.c.id == bindparam("message_id", type_=Integer()))
              .values(state="sent", sent_at=bindparam("now", type_=OutboxMessage.__table__.c.sent_at.type),
                      job_id=bindparam("job", type_=OutboxMessage.__table__.c.job_id.type),
                      claimed_by=None, claim_expires_at=None))


def mark_all_sent(session: Session, sent: dict[int, str | None], *, now: datetime | None = None) -> None:
    """Record successful publishes ({row id: job id}), in the caller's transaction with what the publish
    changed: one statement, run once per row (executemany)."""
    now = now or utcnow()
    if sent:
        session.execute(_MARK_SENT, [{"message_id": message_id, "job": job_id, "now": now}
                                     for message_id, job_id in sent.items()])


def release(db: Database, ids: list[int], *, error: str, now: datetime | None = None,
            max_backoff: float = 60.0) -> None:
    """Give claimed rows back after a failed publish, due again after an exponential backoff."""
    now = now or utcnow()
    with db.transaction() as session:
        for message in session.scalars(select(OutboxMessage).where(OutboxMessage.id.in_(ids))):
            message.attempts += 1
            delay = min(max_backoff, 0.5 * 2 ** min(message.attempts, 16))
            message.state, message.next_attempt_at, message.last_error = "pending", now + timedelta(seconds=delay), \
                error[:120]
            message.claimed_by = message.claim_expires_at = None


def pending_count(db: Database) -> int:
    """Rows not yet published (for metrics, readiness and tests)."""
    from sqlalchemy import func

    with db.transaction() as session:
        return session.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.state != "sent"))

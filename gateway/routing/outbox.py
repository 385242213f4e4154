"""The transactional outbox: routed work is written with the change that caused it, published later.

Submit writes the status change, its timeline event and an outbox row in one
transaction, so work is never lost when Redis is down and never published for
a change that rolled back.  Relays claim due rows with a lease — one UPDATE,
atomic on SQLite's single writer and `SKIP LOCKED` on PostgreSQL — so two
relays never publish the same row, and a relay that dies mid-batch leaves rows
that become due again when the lease runs out.  A row published twice (relay
killed between enqueue and mark-sent) is harmless: consumers deduplicate.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from gateway.db import Database, utcnow
from gateway.routing.decide import RoutingDecision
from gateway.routing.models import OutboxMessage

LEASE = timedelta(seconds=60)


@dataclass(frozen=True)
class Claimed:
    """A row one relay now owns until its lease expires."""

    id: int
    request_id: str
    queue: str
    at_front: bool
    step: str


def add_routing(session: Session, *, request_id: str, decision: RoutingDecision) -> OutboxMessage:
    """Queue routing work for a request inside the caller's transaction."""
    message = OutboxMessage(request_id=request_id, queue=decision.queue, at_front=decision.at_front,
                            state="pending", next_attempt_at=utcnow())
    session.add(message)
    session.flush()
    return message


def _due(now: datetime):
    return or_(
        (OutboxMessage.state == "pending") & (OutboxMessage.next_attempt_at <= now),
        (OutboxMessage.state == "claimed") & (OutboxMessage.claim_expires_at <= now),
    )


def claim(db: Database, *, relay: str, limit: int, now: datetime | None = None,
          lease: timedelta = LEASE) -> list[Claimed]:
    """Take up to `limit` due rows for this relay, oldest first."""
    now = now or utcnow()
    token = f"{relay}:{uuid.uuid4().hex[:12]}"[:80]  # this call's claims, told apart from any other's
    with db.transaction() as session:
        due_ids = (select(OutboxMessage.id).where(_due(now)).order_by(OutboxMessage.id).limit(limit)
                   .with_for_update(skip_locked=True).scalar_subquery())
        session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(due_ids), _due(now))
                        .values(state="claimed", claimed_by=token, claim_expires_at=now + lease),
                        execution_options={"synchronize_session": False})
        rows = session.scalars(select(OutboxMessage).where(OutboxMessage.claimed_by == token)
                               .order_by(OutboxMessage.id)).all()
        return [Claimed(r.id, r.request_id, r.queue, r.at_front, r.step) for r in rows]


def mark_sent(session: Session, message_id: int, *, job_id: str, now: datetime | None = None) -> OutboxMessage:
    """Record a successful publish (in the caller's transaction, with the routed status change)."""
    message = session.get(OutboxMessage, message_id)
    message.state, message.sent_at, message.job_id = "sent", now or utcnow(), job_id
    message.claimed_by = message.claim_expires_at = None
    return message


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

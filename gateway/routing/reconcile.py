"""Route jobs the queue broker lost, published again: the outbox, not Redis, decides what is still owed.

A route row is `sent` once its job is on RQ; from then on RQ holds the job until a worker records the
step's effect (`JobEffect`).  RQ can lose a job in between, and nothing in RQ notices:

- a worker listening on several queues takes a job with BLPOP (RQ's intermediate list, which its registry
  sweep recovers, guards only single-queue workers); killed before it marks the job started, it leaves the
  job in no list and no registry, "queued" for ever;
- Redis restarted without persistence (or flushed, or evicting under `maxmemory`) drops every queued job.

So the relay's housekeeping looks, every `every` seconds, at the routes sent at least `lost_after` seconds
ago whose step has no effect yet, however long ago they were sent (a cursor walks them, so a long
legitimate backlog does not hide a lost job behind it): a job the broker holds nowhere — not queued, not
taken, not started, not scheduled for a retry, not failed — is a suspect.  A suspect still held nowhere at
the next look is published again under its own id, at the front of its queue.  The two looks keep a live
worker's job, in the instant between BLPOP and "started", from being published twice; were it published
twice anyway, the second run finds the step's effect and does nothing (consumers deduplicate on the step).
A failed job is an operator's (`gateway jobs failed`), never republished here.

What keeps a look cheap is `settled_at`: each look first marks the routes whose effect is recorded as
settled (up to `SETTLE_BATCH` of them), and the looks read only unsettled routes, through a partial index
that holds nothing else (`ix_outbox_unsettled`).  So a look costs what is in flight or owed, not the
outbox's history; settling is only bookkeeping, and the look checks the effect again itself.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import String, cast, exists, select, update

from gateway import metrics
from gateway.db import Database, utcnow
from gateway.outbox import UNSETTLED_ROUTE, OutboxMessage
from gateway.routing.dispatch import Dispatcher
from gateway.routing.models import JobEffect
from gateway.routing.relay import ROUTE_JOB

log = logging.getLogger("gateway.routing.reconcile")

LOST_AFTER = 30.0  # seconds since a route was sent before its job's whereabouts are checked
EVERY = 10.0  # seconds between looks; a lost job is published again at the second look that misses it
BATCH = 200  # owed routes looked at per look
SETTLE_BATCH = 2000  # handed-over routes marked settled per look (more than 10 s of a busy system's routes)


def _effect_recorded():
    step = OutboxMessage.queue + "#" + cast(OutboxMessage.id, String)
    return exists().where(JobEffect.request_id == OutboxMessage.request_id, JobEffect.step == step)


class LostRoutes:
    """Finds route jobs the broker holds nowhere and publishes them again (see the module's docstring)."""

    def __init__(self, db: Database, dispatcher: Dispatcher, *, clock=time.monotonic, lost_after: float = LOST_AFTER,
                 every: float = EVERY, batch: int = BATCH, settle_batch: int = SETTLE_BATCH):
        self.db, self.dispatcher, self.clock = db, dispatcher, clock
        self.lost_after, self.every, self.batch, self.settle_batch = lost_after, every, batch, settle_batch
        self._next = clock()
        self._after_id = 0  # the cursor: routes with a larger outbox id are looked at next
        self._suspects: set[int] = set()  # outbox ids whose job was held nowhere at the previous look

    def tick(self) -> int:
        """Look if due; returns how many jobs were published again.  Raises DispatchUnavailable on an outage."""
        now = self.clock()
        if now < self._next:
            return 0
        self._next = now + self.every
        self.settle()
        owed = self._owed()
        if not owed:
            self._suspects = set()
            return 0
        missing = self.dispatcher.lost({route.job_id: route.queue for route in owed.values()})
        held_nowhere = {outbox_id for outbox_id, route in owed.items() if route.job_id in missing}
        republished = 0
        for outbox_id in sorted(held_nowhere & self._suspects):
            route = owed[outbox_id]
            self.dispatcher.enqueue(route.queue, ROUTE_JOB, [route.request_id, route.step], job_id=route.job_id,
                                    at_front=True)
            log.warning("route job lost by the queue broker; published again", extra={"job_id": route.job_id})
            metrics.ROUTES_REPUBLISHED.inc()
            republished += 1
        self._suspects = held_nowhere - self._suspects
        return republished

    def settle(self) -> int:
        """Mark settled the routes (sent `lost_after` ago or more) whose effect is recorded; how many."""
        now = utcnow()
        settled = (select(OutboxMessage.id)
                   .where(UNSETTLED_ROUTE, OutboxMessage.sent_at <= now - timedelta(seconds=self.lost_after),
                          _effect_recorded())
                   .limit(self.settle_batch).scalar_subquery())
        with self.db.transaction() as session:
            return session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(settled)).values(settled_at=now),
                                   execution_options={"synchronize_session": False}).rowcount

    def _owed(self) -> dict[int, _Route]:
        """The previous look's suspects and the next batch after the cursor, of the unsettled routes whose step
        has no effect yet."""
        owed = (select(OutboxMessage.id, OutboxMessage.request_id, OutboxMessage.queue, OutboxMessage.job_id)
                .where(UNSETTLED_ROUTE, ~_effect_recorded()))
        with self.db.transaction() as session:
            rows = session.execute(
                owed.where(OutboxMessage.sent_at <= utcnow() - timedelta(seconds=self.lost_after),
                           OutboxMessage.id > self._after_id)
                .order_by(OutboxMessage.id).limit(self.batch)).all()
            suspects = session.execute(owed.where(OutboxMessage.id.in_(self._suspects))).all() \
                if self._suspects else []
        # A short batch reached the end: the next look starts again from the oldest.
        self._after_id = rows[-1].id if len(rows) == self.batch else 0
        return {row.id: _Route(row.job_id or f"route-{row.id}", row.queue, row.request_id, f"{row.queue}#{row.id}")
                for row in (*rows, *suspects)}


@dataclass(frozen=True)
class _Route:
    job_id: str
    queue: str
    request_id: str
    step: str

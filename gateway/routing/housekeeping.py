"""Periodic work the relay does between passes: due webhook deliveries and e-mails, the orphan sweep, the daily
stale-work sweep, audit checkpoints, and route jobs the broker lost published again (`reconcile`)."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from gateway.clock import Clock, SystemClock
from gateway.db import Database
from gateway.routing.dispatch import Dispatcher, DispatchUnavailable
from gateway.routing.queues import MAINTENANCE
from gateway.routing.reconcile import LostRoutes
from gateway.settings import Settings

log = logging.getLogger("gateway.routing.housekeeping")

SWEEP_EVERY = 3600.0
WEBHOOKS_EVERY = 1.0
# Webhook deliveries, e-mails and reset e-mails claimed per kind and tick.  A claim that comes back full means
# more are due: the next tick (the relay's next loop, a tenth of a second on) claims again instead of a second
# later.  Once a second, 100 was a ceiling: at a busy hour's ~100 e-mails a second the backlog grew without end.
CLAIM_LIMIT = 100
DELIVERY_LEASE = timedelta(minutes=5)
MAIL_JOB_SIZE = 20
STALE_WORK_JOB = "gateway.intake.jobs.close_stale_work"


class Housekeeping:
    """Enqueues maintenance jobs on the `gateway` queue at their intervals."""

    def __init__(self, settings: Settings, db: Database, dispatcher: Dispatcher, clock=time.monotonic,
                 checkpointer=None, calendar: Clock | None = None):
        self.settings, self.db, self.dispatcher, self.clock = settings, db, dispatcher, clock
        # gateway.audit.checkpointer.Checkpointer: signs the audit chain's head into the Object Lock
        # bucket when due; its tick only starts a background step, so S3 never holds up the relay.
        self.checkpointer = checkpointer
        # The facilities' calendar: the stale-work sweep runs once per day of it (and when the relay starts).
        self.calendar = calendar or (SystemClock.from_settings(settings) if settings is not None else None)
        self._next_sweep = clock()
        self._next_webhooks = clock()
        self._stale_swept_on = None
        self.lost_routes = LostRoutes(db, dispatcher, clock=clock)

    def tick(self) -> None:
        """Called by the relay between passes; never raises."""
        now = self.clock()
        if self.checkpointer is not None:
            try:
                self.checkpointer.tick()
            except Exception as error:
                log.error("audit checkpoint step failed", extra={"exception_type": type(error).__name__})
        try:
            if now >= self._next_webhooks:
                self._next_webhooks = now + WEBHOOKS_EVERY  # kept if a claim fails: no tight retry loop
                full = self._webhook_deliveries()
                full = self._mail_deliveries() or full
                if full:
                    self._next_webhooks = now
            if now >= self._next_sweep:
                self._next_sweep = now + SWEEP_EVERY
                self.dispatcher.enqueue(MAINTENANCE, "gateway.intake.jobs.sweep_orphans", [],
                                        job_id=f"sweep-{int(time.time() // SWEEP_EVERY)}")
            self._stale_work()
        except DispatchUnavailable:
            pass  # Redis is down; the relay is already backing off
        except Exception as error:
            log.error("housekeeping failed", extra={"exception_type": type(error).__name__})
        try:
            self.lost_routes.tick()
        except DispatchUnavailable:
            pass
        except Exception as error:
            log.error("looking for lost route jobs failed", extra={"exception_type": type(error).__name__})

    def _webhook_deliveries(self) -> bool:
        """Hand due webhook deliveries to the workers; True when the claim was full (more are due)."""
        from gateway.db import utcnow
        from gateway.webhooks.service import claim_due

        with self.db.transaction() as session:
            due = claim_due(session, now=utcnow(), limit=CLAIM_LIMIT, lease=DELIVERY_LEASE)
        for delivery_id in due:
            self.dispatcher.enqueue(MAINTENANCE, "gateway.webhooks.jobs.deliver_job", [delivery_id],
                                    job_id=f"webhook-{delivery_id}-{int(time.time())}")
        return len(due) >= CLAIM_LIMIT

    def _mail_deliveries(self) -> bool:
        """Hand due e-mails (and reset e-mails) to the workers; True when a claim was full (more are due)."""
        from gateway.db import utcnow
        from gateway.mail.service import claim_due

        with self.db.transaction() as session:
            due = claim_due(session, now=utcnow(), limit=CLAIM_LIMIT, lease=DELIVERY_LEASE)
        # A job per MAIL_JOB_SIZE e-mails: a job per e-mail cost the worker more than the sending, and one job
        # for a large batch would keep a worker from hand-overs (route queues come first only between jobs).
        for start in range(0, len(due), MAIL_JOB_SIZE):
            part = due[start:start + MAIL_JOB_SIZE]
            self.dispatcher.enqueue(MAINTENANCE, "gateway.mail.jobs.send_all_job", [part],
                                    job_id=f"mail-{part[0]}-{len(part)}-{int(time.time())}")
        resets_full = self._reset_mails()
        return len(due) >= CLAIM_LIMIT or resets_full

    def _reset_mails(self) -> bool:
        from gateway.auth.password_reset import claim_due
        from gateway.db import utcnow

        with self.db.transaction() as session:
            due = claim_due(session, now=utcnow(), limit=CLAIM_LIMIT, lease=DELIVERY_LEASE)
        for reset_id in due:
            self.dispatcher.enqueue(MAINTENANCE, "gateway.auth.password_reset.send_job", [reset_id],
                                    job_id=f"reset-mail-{reset_id}-{int(time.time())}")
        return len(due) >= CLAIM_LIMIT

    def _stale_work(self) -> None:
        """Once per day of the facilities' calendar: the sweep closing stale drafts and unanswered returns."""
        if self.calendar is None:
            return
        today = self.calendar.today()
        if today == self._stale_swept_on:
            return
        self.dispatcher.enqueue(MAINTENANCE, STALE_WORK_JOB, [], job_id=f"stale-work-{today.isoformat()}")
        self._stale_swept_on = today  # only once enqueued: a broker outage tries again on the next tick

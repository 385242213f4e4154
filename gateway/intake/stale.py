"""Stale work closes itself (API.md v1.1, "The request lifecycle").

A draft nobody has touched for `stale_draft_days` (60) and a returned request
its requester has not answered for `stale_returned_days` (30) are cancelled
with the reason code `STALE_DRAFT` or `RETURN_UNANSWERED`.  `stale_warning_days`
(7) before that, the requester is warned: a `stale_warning` timeline event
naming the date it will close, and a `request.stale_warning` event (webhook and
e-mail, ids and the date only).

"Touched" is the request's `updated_at`: any change to it (an edit, a document,
a status change) starts the period again, and a new period gets its own
warning.  Messages on the thread are not changes to the request and do not.
Days are counted in the facilities' calendar from the date of the last touch.
A request is never closed without its notice: one that reaches its date
unwarned (the job did not run, the periods were shortened) is warned then, and
closes a full notice period later.  The warning itself changes nothing on the
request, so it does not restart the period.

`sweep` runs daily from the relay's housekeeping (`gateway.intake.jobs.close_stale_work`
on the maintenance queue, and `gateway maintenance stale` by hand); each
request is judged under its row lock, through the lifecycle, so running the
sweep twice, or beside a requester editing, is safe.  "Now" is the injected
clock's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from gateway.clock import Clock, local
from gateway.db import Database
from gateway.intake import lifecycle
from gateway.intake.models import RecordsRequest, RequestEvent

STALE_DRAFT, RETURN_UNANSWERED = "STALE_DRAFT", "RETURN_UNANSWERED"
REASONS = {"draft": STALE_DRAFT, "returned": RETURN_UNANSWERED}
WARNING = "stale_warning"
ACTOR = "gateway"


@dataclass(frozen=True)
class StalePolicy:
    """How long drafts and returned requests may sit, and how long before closing the requester is warned."""

    draft_days: int = 60
    returned_days: int = 30
    warning_days: int = 7

    @classmethod
    def from_settings(cls, settings) -> StalePolicy:
        """The periods named in settings (GATEWAY_STALE_*_DAYS)."""
        return cls(settings.stale_draft_days, settings.stale_returned_days, settings.stale_warning_days)

    def period(self, status: str) -> int:
        """Days a request in `status` may go untouched."""
        return self.draft_days if status == "draft" else self.returned_days


@dataclass
class SweepResult:
    """What one sweep did: request ids warned and closed."""

    warned: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)


def _candidates(session: Session, policy: StalePolicy, clock: Clock) -> list[str]:
    # A day's margin either way of the time zone; each candidate is judged exactly under its lock.
    now = clock.now()
    conditions = [and_(RecordsRequest.status == status, RecordsRequest.updated_at
                       <= now - timedelta(days=policy.period(status) - policy.warning_days - 1))
                  for status in REASONS]
    return list(session.scalars(select(RecordsRequest.id).where(or_(*conditions)).order_by(RecordsRequest.updated_at)))


def last_warning(session: Session, req: RecordsRequest) -> RequestEvent | None:
    """The warning given since the request was last touched, if any."""
    return session.scalars(select(RequestEvent).where(
        RequestEvent.request_id == req.id, RequestEvent.type == WARNING, RequestEvent.at >= req.updated_at)
        .order_by(RequestEvent.id.desc()).limit(1)).one_or_none()


def closing_date(req: RecordsRequest, policy: StalePolicy, clock: Clock) -> date:
    """The date an untouched request closes: its period after the day it was last touched."""
    return local(req.updated_at, clock.timezone).date() + timedelta(days=policy.period(req.status))


def judge(session: Session, req: RecordsRequest | None, *, policy: StalePolicy, clock: Clock) -> str | None:
    """On the locked row: "closed", "warned", or None (fresh, already warned, or no longer stale-able)."""
    if req is None or req.status not in REASONS:
        return None
    today = clock.today()
    closes_on = closing_date(req, policy, clock)
    if today < closes_on - timedelta(days=policy.warning_days):
        return None
    warning = last_warning(session, req)
    if warning is None:
        # Never closed without a full notice: a late warning moves the date out.
        closes_on = max(closes_on, today + timedelta(days=policy.warning_days))
        lifecycle.add_event(session, req, WARNING, ACTOR, closes_on=closes_on.isoformat())
        lifecycle.audit_change(session, req, "request.stale_warning", actor=ACTOR, audit_ctx={})
        lifecycle.notify(session, req, "request.stale_warning", actor=ACTOR, status=req.status,
                         closes_on=closes_on.isoformat())
        return "warned"
    if today < date.fromisoformat(warning.detail["closes_on"]):
        return None
    lifecycle.move(session, req, "cancelled", actor=ACTOR, audit_ctx={}, reasons=[REASONS[req.status]])
    return "closed"


def sweep(db: Database, *, clock: Clock, policy: StalePolicy) -> SweepResult:
    """Warn and close stale drafts and returned requests as of the clock's today; safe to run any number of times."""
    result = SweepResult()
    with db.transaction() as session:
        ids = _candidates(session, policy, clock)
    for request_id in ids:
        with lifecycle.locked_for_system(db, request_id) as (session, req):
            outcome = judge(session, req, policy=policy, clock=clock)
        if outcome == "warned":
            result.warned.append(request_id)
        elif outcome == "closed":
            result.closed.append(request_id)
    return result

"""A facility's dashboard: its requests by status, what is due today or late, turnaround and daily flow.

Every figure counts the requests the caller may see as staff of the facility (from routing on), and every
day is a day of the facilities' calendar (the injected clock's time zone), never the machine's:

- `counts`: requests by their current status;
- `due_today` / `overdue`: open requests (the queue's statuses) due today / due before today;
- `turnaround`: the median, in calendar days, from submission (the first one: a cured request keeps it,
  as it keeps its place in the queue) to release, of the requests released in the last `WINDOW_DAYS` days;
- `daily`: for each of those days, the requests that arrived (were submitted) and those released
  (their status became `fulfilled`, as the timeline records it), oldest day first.
"""

from __future__ import annotations

import statistics
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.auth.principal import Principal
from gateway.auth.tenancy import visibility
from gateway.intake.models import STATUSES, RecordsRequest, RequestEvent
from gateway.routing.queue import OPEN_STATUSES
from gateway.routing.staff import require_staff_of

WINDOW_DAYS = 30
RELEASED = "fulfilled"
# Staff see a request from its routing on: a draft is never theirs to count.
COUNTED_STATUSES = tuple(s for s in STATUSES if s != "draft")


def _start_of(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)


def facility_dashboard(session: Session, principal: Principal, facility: str, *, today: date,
                       timezone: ZoneInfo) -> dict:
    """The facility's figures as of `today` in `timezone` (API.md "Dashboard"); 403 for anyone but its staff."""
    require_staff_of(principal, facility)
    mine = visibility(principal, RecordsRequest) & (RecordsRequest.facility == facility)
    by_status = dict(session.execute(select(RecordsRequest.status, func.count()).where(mine)
                                     .group_by(RecordsRequest.status)).all())
    open_work = mine & RecordsRequest.status.in_(OPEN_STATUSES)
    due_today = session.scalar(select(func.count()).where(open_work, RecordsRequest.due_on == today))
    overdue = session.scalar(select(func.count()).where(open_work, RecordsRequest.due_on < today))

    first = today - timedelta(days=WINDOW_DAYS - 1)
    since, until = _start_of(first, timezone), _start_of(today + timedelta(days=1), timezone)
    days = {first + timedelta(days=n): {"arrivals": 0, "releases": 0} for n in range(WINDOW_DAYS)}
    arrived = session.scalars(select(RecordsRequest.submitted_at).where(
        mine, RecordsRequest.submitted_at >= since, RecordsRequest.submitted_at < until))
    for at in arrived:
        days[at.astimezone(timezone).date()]["arrivals"] += 1
    # `fulfilled` is final, so a release in the window is the status event of a request fulfilled now.
    released = session.execute(
        select(RequestEvent.at, RecordsRequest.submitted_at)
        .join(RecordsRequest, RequestEvent.request_id == RecordsRequest.id)
        .where(mine, RecordsRequest.status == RELEASED, RequestEvent.type == "status_changed",
               RequestEvent.status == RELEASED, RequestEvent.at >= since, RequestEvent.at < until))
    turnarounds = []
    for at, submitted_at in released:
        released_on = at.astimezone(timezone).date()
        days[released_on]["releases"] += 1
        if submitted_at is not None:
            turnarounds.append((released_on - submitted_at.astimezone(timezone).date()).days)
    return {
        "facility": facility, "as_of": today, "timezone": timezone.key,
        "counts": {status: by_status.get(status, 0) for status in COUNTED_STATUSES},
        "open": sum(by_status.get(status, 0) for status in OPEN_STATUSES),
        "due_today": due_today or 0, "overdue": overdue or 0,
        "turnaround": {"from": first, "to": today, "released": len(turnarounds),
                       "median_days": statistics.median(turnarounds) if turnarounds else None},
        "daily": [{"date": day, **figures} for day, figures in days.items()],
    }

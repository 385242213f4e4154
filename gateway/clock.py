"""The one clock of the gateway: the current instant (UTC) and today's date in the facilities' calendar.

Release rules, due dates, overdue flags, jobs and housekeeping ask a `Clock`
for "today", never the machine: an authorization signed at 9 pm in Boston is
signed "today" in Boston even though it is already tomorrow in UTC, and the
machine running the gateway may sit in any time zone.  The application factory
builds one `SystemClock` from settings and injects it; workers build theirs
once per process; unit tests use a `FixedClock`.

This module is the only place that reads the system time for dates and
timestamps (a test walks the source tree to keep it so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

DEFAULT_TIMEZONE = "America/New_York"


class Clock(Protocol):
    """What the gateway asks about time."""

    timezone: ZoneInfo

    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""

    def today(self) -> date:
        """Today's date in the facilities' calendar."""


def utcnow() -> datetime:
    """The current instant, UTC-aware, to the microsecond (record timestamps such as created_at)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class SystemClock:
    """The real clock, judging dates in one time zone (settings: `GATEWAY_FACILITY_TIMEZONE`)."""

    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo(DEFAULT_TIMEZONE))

    @classmethod
    def from_settings(cls, settings) -> SystemClock:
        """The clock of the facilities' calendar named in settings."""
        return cls(ZoneInfo(settings.facility_timezone))

    def now(self) -> datetime:
        """The current instant, UTC."""
        return utcnow()

    def today(self) -> date:
        """Today in the facilities' calendar (an authorization expiring today is valid until midnight there)."""
        return local(self.now(), self.timezone).date()


class FixedClock:
    """A clock that stands still until moved (unit tests and simulations of stale work)."""

    def __init__(self, moment: datetime, timezone: str = DEFAULT_TIMEZONE):
        if moment.tzinfo is None:
            raise ValueError("a FixedClock needs an aware datetime")
        self.timezone = ZoneInfo(timezone)
        self.moment = moment.astimezone(UTC)

    @classmethod
    def at_local(cls, day: date, at: time = time(12, 0), timezone: str = DEFAULT_TIMEZONE) -> FixedClock:
        """A clock at a wall-clock time of the facilities' calendar."""
        return cls(datetime.combine(day, at, tzinfo=ZoneInfo(timezone)), timezone)

    def now(self) -> datetime:
        """The frozen instant."""
        return self.moment

    def today(self) -> date:
        """The frozen instant's date in the facilities' calendar."""
        return local(self.moment, self.timezone).date()

    def advance(self, **delta) -> None:
        """Move forward by a timedelta's keyword arguments (days=, hours=, ...)."""
        self.moment += timedelta(**delta)


def local(moment: datetime, timezone: ZoneInfo) -> datetime:
    """An aware instant as wall-clock time in `timezone`."""
    return moment.astimezone(timezone)

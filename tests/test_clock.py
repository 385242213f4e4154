"""The one clock: today in the facilities' calendar, and no other reader of the system date in the code."""

from __future__ import annotations

import ast
from datetime import UTC, date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine

from gateway.clock import FixedClock, SystemClock
from gateway.settings import Settings

# Judged against the facilities' calendar: .ci/run repeats these with the machine in far time zones.
pytestmark = pytest.mark.date_sensitive

GATEWAY = Path(__file__).resolve().parents[1] / "gateway"
# Calls that read the machine's date or time of day; only gateway/clock.py may make them.
FORBIDDEN = {("date", "today"), ("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"),
             ("time", "localtime")}


def _system_date_reads(path: Path) -> list[str]:
    """`file:line call()` for every call in `path` that reads the machine's date or time."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) \
                else None
            if (name, node.func.attr) in FORBIDDEN:
                found.append(f"{path.name}:{node.lineno} {name}.{node.func.attr}()")
    return found


def test_only_the_clock_module_reads_the_system_date():
    offenders = [hit for path in sorted(GATEWAY.rglob("*.py")) if path != GATEWAY / "clock.py"
                 for hit in _system_date_reads(path)]
    assert offenders == []


def test_the_walk_would_catch_a_direct_read(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import datetime\nfrom datetime import date\nx = date.today()\ny = datetime.datetime.now()\n")
    assert _system_date_reads(sample) == ["sample.py:3 date.today()", "sample.py:4 datetime.now()"]


def test_system_clock_takes_its_time_zone_from_settings():
    settings = Settings.from_env({}, env="test", secret_key="x" * 40, facility_timezone="America/Los_Angeles",
                                 data_dir=Path("/nonexistent"))
    clock = SystemClock.from_settings(settings)
    # 06:30 UTC on 1 December: still 30 November in California, already 1 December in Boston.
    with time_machine.travel(datetime(2026, 12, 1, 6, 30, tzinfo=UTC), tick=False):
        assert clock.today() == date(2026, 11, 30)
        assert SystemClock(ZoneInfo("America/New_York")).today() == date(2026, 12, 1)
        assert clock.now() == datetime(2026, 12, 1, 6, 30, tzinfo=UTC)


def test_fixed_clock_stands_still_until_moved():
    clock = FixedClock.at_local(date(2026, 11, 30), time(23, 30))
    assert clock.today() == date(2026, 11, 30)
    assert clock.now() == datetime(2026, 12, 1, 4, 30, tzinfo=UTC)
    clock.advance(hours=1)
    assert clock.today() == date(2026, 12, 1)


def test_the_app_clock_is_the_facility_calendar(app, clock):
    assert clock is app.extensions["gateway"].clock
    assert str(clock.timezone) == app.extensions["gateway"].settings.facility_timezone

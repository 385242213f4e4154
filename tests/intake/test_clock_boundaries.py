"""The rules judge dates in Boston, whatever the machine's date and time zone say.

The system clock is frozen (time-machine) at instants where the machine's date
and Massachusetts' date differ: 23:30 Boston on the last day of a month (already
the 1st in UTC, and later still in Kiritimati) and 00:30 on the 1st (still the
last day in Pago Pago).  The destination carries the machine's zone, so
time-machine also sets the process's local time zone to it: the machine's own
calendar is switched under the running app to show that it plays no part.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine

from tests.factories import bearer, make_tenant, request_body

# Judged against the facilities' calendar: .ci/run repeats these with the machine in far time zones.
pytestmark = pytest.mark.date_sensitive

BOSTON = "America/New_York"
# 23:30 in Boston on 30 November is 04:30 UTC on 1 December; 00:30 on 1 December is 05:30 UTC.
NOV_30_2330_BOSTON = datetime(2026, 12, 1, 4, 30, tzinfo=UTC)
DEC_01_0030_BOSTON = datetime(2026, 12, 1, 5, 30, tzinfo=UTC)
# Tuesday 24 November 2026, 23:30 in Boston: Wednesday in UTC; Thanksgiving (26th) is a holiday.
NOV_24_2330_BOSTON = datetime(2026, 11, 25, 4, 30, tzinfo=UTC)
MACHINE_ZONES = ("Pacific/Kiritimati", "Pacific/Pago_Pago", "UTC")


@pytest.fixture(scope="module")
def firm(db):
    return make_tenant(db, "law_firm")


@pytest.fixture(params=MACHINE_ZONES)
def machine_zone(request):
    """The time zone the machine is pretended to be in."""
    return request.param


def frozen(instant: datetime, machine_zone: str):
    """Freeze the system clock at `instant`, with the process's local time zone set to `machine_zone`."""
    return time_machine.travel(instant.astimezone(ZoneInfo(machine_zone)), tick=False)


def _codes(client, firm, body) -> set[str]:
    response = client.post("/v1/requests/validate", json=body, headers=bearer(firm.api_key))
    assert response.status_code == 200, response.get_json()
    return {d["code"] for d in response.get_json()["deficiencies"]}


def _validated(client, firm, body) -> dict:
    response = client.post("/v1/requests/validate", json=body, headers=bearer(firm.api_key))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _authorization(signed_on: date, expires_on: date, *, today: date) -> dict:
    return request_body(today=today, authorization__signed_on=str(signed_on),
                        authorization__expires_on=str(expires_on))


def test_at_2330_in_boston_on_the_last_day_of_the_month_it_is_still_that_day(client, firm, clock, machine_zone):
    with frozen(NOV_30_2330_BOSTON, machine_zone):
        assert clock.today() == date(2026, 11, 30)
        # The machine's own date is the 1st in Kiritimati and UTC (and the 30th in Pago Pago).
        assert date.today() == (date(2026, 11, 30) if machine_zone == "Pacific/Pago_Pago" else date(2026, 12, 1))
        # Signed today and expiring today: valid until midnight in Boston.
        today_only = _authorization(date(2026, 11, 30), date(2026, 11, 30), today=date(2026, 11, 30))
        assert not {"AUTH_SIGNED_IN_FUTURE", "AUTH_EXPIRED"} & _codes(client, firm, today_only)
        # Signed "tomorrow" (already today in UTC and in Kiritimati) is in the future in Boston.
        tomorrow = _authorization(date(2026, 12, 1), date(2027, 5, 1), today=date(2026, 11, 30))
        assert "AUTH_SIGNED_IN_FUTURE" in _codes(client, firm, tomorrow)


def test_at_0030_in_boston_on_the_first_the_month_has_turned(client, firm, clock, machine_zone):
    with frozen(DEC_01_0030_BOSTON, machine_zone):
        assert clock.today() == date(2026, 12, 1)
        assert date.today() == (date(2026, 11, 30) if machine_zone == "Pacific/Pago_Pago" else date(2026, 12, 1))
        # Expired at midnight in Boston, though Pago Pago's machine still says 30 November.
        yesterday_only = _authorization(date(2026, 11, 30), date(2026, 11, 30), today=date(2026, 12, 1))
        assert "AUTH_EXPIRED" in _codes(client, firm, yesterday_only)
        # Signed on the 1st is signed today.
        signed_today = _authorization(date(2026, 12, 1), date(2027, 5, 1), today=date(2026, 12, 1))
        assert not {"AUTH_SIGNED_IN_FUTURE", "AUTH_EXPIRED"} & _codes(client, firm, signed_today)


def test_due_date_counts_business_days_from_the_boston_date_across_thanksgiving(client, firm, clock,
                                                                               machine_zone):
    # Tufts Medical Center: 5 business days.  From Tuesday 24 November: Wed 25, (Thu 26 Thanksgiving),
    # Fri 27, Mon 30, Tue 1, Wed 2 → 2 December.  From the UTC date (the 25th) it would be 3 December,
    # and without the holiday 1 December.
    with frozen(NOV_24_2330_BOSTON, machine_zone):
        assert clock.today() == date(2026, 11, 24)
        assert date.today() == (date(2026, 11, 24) if machine_zone == "Pacific/Pago_Pago" else date(2026, 11, 25))
        body = request_body("tufts-mc", today=date(2026, 11, 24))
        assert _validated(client, firm, body)["due_on"] == "2026-12-02"

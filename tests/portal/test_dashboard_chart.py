"""The dashboard chart's geometry (unit: no database): bars on one baseline, a round value axis, weekly labels."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from gateway.portal.dashboard import HEIGHT, TOP, _axis_top, chart


@pytest.mark.parametrize(("largest", "expected"), [(0, (1, 1)), (1, (1, 1)), (5, (5, 1)), (7, (8, 2)),
                                                   (23, (25, 5)), (130, (150, 50)), (999, (1000, 200))])
def test_the_value_axis_ends_on_a_round_number(largest, expected):
    assert _axis_top(largest) == expected


def test_bars_stand_on_the_baseline_in_proportion_and_dates_are_labelled_weekly():
    first = date(2025, 2, 13)
    daily = [{"date": first + timedelta(days=n), "arrivals": n % 3, "releases": 4 if n == 29 else 0}
             for n in range(30)]
    drawn = chart(daily)
    bars = {(b["date"], b["series"]): b for b in drawn["bars"]}
    assert len(drawn["bars"]) == 60
    tallest = bars[(date(2025, 3, 14), "releases")]
    assert tallest["y"] == TOP and tallest["y"] + tallest["height"] == drawn["baseline"]  # 4 is the axis top
    two = bars[(first + timedelta(days=2), "arrivals")]
    assert two["height"] == pytest.approx(tallest["height"] / 2, abs=0.1)
    assert bars[(first, "arrivals")]["height"] == 0
    xs = [b["x"] for b in drawn["bars"]]
    assert xs == sorted(xs) and xs[-1] + drawn["bars"][-1]["width"] <= drawn["right"]
    assert [label["date"] for label in drawn["labels"]] == [first + timedelta(days=n) for n in (1, 8, 15, 22, 29)]
    assert [t["value"] for t in drawn["ticks"]] == [0, 1, 2, 3, 4] and drawn["baseline"] < HEIGHT

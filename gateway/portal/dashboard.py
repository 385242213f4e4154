"""A facility's dashboard for its records team: the figures of `GET /v1/facilities/{code}/dashboard`, and a
chart of daily arrivals against releases drawn on the server as SVG.

No chart library and no script: the chart is SVG elements in the page, styled by classes from the one
stylesheet (the portal's CSP allows no inline style, and SVG presentation attributes such as `x` or
`height` are not styles).  It is an image with a name and a summary for assistive technology, and the
table beneath it, with every day's numbers, is its text alternative.
"""

from __future__ import annotations

import math

from flask import g, request

from gateway.auth.web import audit_context, requires
from gateway.errors import Forbidden
from gateway.facilities.service import list_facilities
from gateway.intake import service
from gateway.portal import bp
from gateway.portal.web import page
from gateway.routing import dashboard
from gateway.web import adapters, clock, db_session

# The drawing's coordinate system (it scales to the page's width).
WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 44, 24, 12, 44
OPEN_ORDER = ("routed", "in_progress", "on_hold", "awaiting_payment")
OTHER_ORDER = ("submitted", "fulfilled", "returned", "denied", "cancelled")


def _axis_top(largest: int) -> tuple[int, int]:
    """A round top for the value axis and its step (at most five ticks above zero)."""
    if largest <= 5:
        return max(largest, 1), 1
    step = math.ceil(largest / 5)
    magnitude = 10 ** (len(str(step)) - 1)
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= step)
    return math.ceil(largest / step) * step, step


def chart(daily: list[dict]) -> dict:
    """Bars, ticks and labels for the daily figures: two bars a day (arrivals, releases), dates every week."""
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top, step = _axis_top(max([0, *(d["arrivals"] for d in daily), *(d["releases"] for d in daily)]))
    slot = plot_width / max(len(daily), 1)
    bar = slot * 0.36
    baseline = TOP + plot_height

    def y(value: int) -> float:
        return round(baseline - plot_height * value / top, 1)

    bars, labels = [], []
    for index, day in enumerate(daily):
        x = LEFT + index * slot + slot * 0.14
        for offset, series in ((0, "arrivals"), (bar, "releases")):
            value = day[series]
            bars.append({"series": series, "x": round(x + offset, 1), "y": y(value), "width": round(bar, 1),
                         "height": round(baseline - y(value), 1), "value": value, "date": day["date"]})
        if (len(daily) - 1 - index) % 7 == 0:  # the last day, and every week before it
            labels.append({"x": round(LEFT + index * slot + slot / 2, 1), "date": day["date"]})
    ticks = [{"value": v, "y": y(v)} for v in range(0, top + 1, step)]
    return {"width": WIDTH, "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT, "baseline": baseline,
            "label_y": baseline + 18, "legend_y": HEIGHT - 8, "bars": bars, "ticks": ticks, "labels": labels}


@bp.route("/dashboard", endpoint="dashboard")
@requires("facility_staff")
def dashboard_page():
    """The facility's figures: open work by status, due today, overdue, turnaround, 30 days of arrivals and
    releases (audited as a read of the facility's figures)."""
    mine = sorted(g.principal.facilities)
    if not mine:
        raise Forbidden("You are not assigned to a facility yet. Ask a gateway administrator to add you to one.")
    facility = request.args.get("facility") or mine[0]
    session = db_session()
    # facility_dashboard refuses a facility the viewer is not staff of (403), exactly as the API does.
    figures = dashboard.facility_dashboard(session, g.principal, facility, today=clock().today(),
                                           timezone=clock().timezone)
    service.audit_read(adapters().db, g.principal, "dashboard.read", "facility", facility, audit_context())
    names = {f.code: f.name for f in list_facilities(session)}
    totals = {"arrivals": sum(d["arrivals"] for d in figures["daily"]),
              "releases": sum(d["releases"] for d in figures["daily"])}
    return page("portal/dashboard.html", d=figures, chart=chart(figures["daily"]), totals=totals,
                facility=facility, facility_name=names.get(facility, facility),
                facilities=[(code, names.get(code, code)) for code in mine],
                open_order=OPEN_ORDER, other_order=OTHER_ORDER)

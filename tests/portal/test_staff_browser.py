"""Issue 15's staff tools in a real browser: Debian's Chromium driven by Playwright against gunicorn (relay,
clamd, moto's S3 and Redis real): the staff request page with the signed authorization framed beside the
checks, the queue's filters, search and row actions, and the dashboard's chart and table."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.factories import make_tenant, make_user, unique
from tests.portal.conftest import screenshot
from tests.portal.test_browser import sign_in
from tests.portal.test_staff_tools import FULL, routed

pytestmark = pytest.mark.date_sensitive


@pytest.fixture(scope="module")
def firm(db):
    return make_tenant(db)


def test_the_staff_page_frames_the_authorization_beside_the_checks_and_works_the_request(portal_site, new_page,
                                                                                        client, db, settings, firm):
    request_id = routed(client, db, settings, firm, "community-practices",
                        documents=("authorization", "representative_authority"), **FULL)
    colleague = make_user(db, ["facility_staff"], ["community-practices"])
    page = new_page(portal_site)
    sign_in(page, make_user(db, ["facility_staff"], ["community-practices"]))
    viewer_answers = []
    page.on("response", lambda r: viewer_answers.append(r) if r.url.endswith("/view") else None)
    page.goto(f"/portal/requests/{request_id}")
    expect(page.locator("#case-patient-name")).to_have_text("Ana Silva")
    expect(page.locator("#case-org")).to_contain_text("Law firm")
    expect(page.locator("#auth-signer")).to_have_text("Maria Silva")
    expect(page.locator("#case-consents")).to_have_text("HIV/AIDS information")
    viewer = page.locator("#authorization-viewer")
    expect(viewer).to_be_visible()
    # The frame loaded the viewer itself (a refused frame shows Chrome's error page instead).
    page.wait_for_function("() => document.getElementById('authorization-viewer').contentWindow !== null")
    assert any(r.status == 200 and r.request.frame.parent_frame == page.main_frame for r in viewer_answers)
    frame = next(f for f in page.frames if f.parent_frame == page.main_frame)
    assert frame.url.endswith("/view"), frame.url
    # The document sits beside the checks, not below them, on a desktop screen.
    checks, document = page.locator(".case-checks").bounding_box(), viewer.bounding_box()
    assert document["x"] > checks["x"] + checks["width"] - 1 and abs(document["y"] - checks["y"]) < 200
    assert "Silva" not in page.title() and "Silva" not in page.url
    screenshot(page, "15-staff-request-page")

    page.get_by_label("Assign to a colleague").select_option(label=colleague)
    page.get_by_role("button", name="Assign", exact=True).click()
    expect(page.locator('h1 [data-status="in_progress"]')).to_be_visible()
    expect(page.locator("#case-assignee")).to_have_text(colleague)
    expect(page.locator("#staff-assignment")).to_contain_text(colleague)


def test_queue_filters_search_and_claim_from_the_list(portal_site, new_page, client, db, settings, firm):
    surname = f"Ibáñez-{unique('b')[2:]}"
    wanted = routed(client, db, settings, firm, "tufts-mc", patient__last_name=surname)
    page = new_page(portal_site)
    sign_in(page, make_user(db, ["facility_staff"], ["tufts-mc"]))
    page.goto("/portal/queue")
    page.get_by_label("Assigned").select_option("nobody")
    page.get_by_label("Sort by").select_option("-updated_at")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"/portal/queue\?facility=tufts-mc&assigned=nobody&sort=-updated_at$"))
    expect(page.locator(f'tr[data-request="{wanted}"]')).to_be_visible()

    typed = surname.replace("á", "a").replace("ñ", "n").lower()  # no accents, no capitals
    page.get_by_label("Reference or patient name").fill(typed)
    page.get_by_label("Reference or patient name").press("Enter")
    expect(page.locator("#results-title")).to_be_visible()
    rows = page.locator("#queue tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-request", wanted)
    assert typed not in page.url.lower() and "Ib" not in page.url  # the terms were posted, not put in the URL
    expect(page.get_by_label("Reference or patient name")).to_have_value(typed)
    screenshot(page, "16-staff-queue-search")

    rows.first.get_by_role("button", name=re.compile(r"^Claim")).click()
    expect(page.locator("#queue-notice")).to_contain_text("Claimed")
    expect(page.locator(f'tr[data-request="{wanted}"]')).to_have_count(0)  # no longer unassigned
    page.get_by_label("Assigned").select_option("me")
    page.get_by_role("button", name="Apply").click()  # the same search, now among my own
    expect(page.locator(f'tr[data-request="{wanted}"] [data-assignee]')).to_have_text("you")
    assert typed not in page.url.lower()


def test_the_dashboard_draws_its_chart_with_a_table_beneath(portal_site, new_page, client, db, settings, firm):
    routed(client, db, settings, firm, "lowell-general")  # at least one arrival today
    page = new_page(portal_site)
    sign_in(page, make_user(db, ["facility_staff"], ["lowell-general"]))
    page.get_by_role("link", name="Dashboard").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Lowell General Hospital")
    chart = page.get_by_role("img", name=re.compile("Requests arrived and released each day"))
    expect(chart).to_be_visible()
    assert chart.bounding_box()["width"] > 300
    expect(page.locator("rect.chart-arrivals").last).to_be_visible()
    fill = page.locator("rect.chart-arrivals").last.evaluate("e => getComputedStyle(e).fill")
    assert fill == "rgb(29, 79, 145)", fill  # styled from portal.css: the CSP allowed the stylesheet's rules
    expect(page.locator("#flow-table")).to_be_hidden()
    page.get_by_text("The chart's numbers, day by day").click()
    expect(page.locator("#flow-table")).to_be_visible()
    expect(page.locator("#flow-table tbody tr")).to_have_count(30)
    screenshot(page, "17-staff-dashboard")
    page.locator('[data-figure="open"]').click()
    expect(page).to_have_url(re.compile(r"/portal/queue\?facility=lowell-general$"))

"""An automated WCAG 2.1 A/AA audit (axe-core, run in Chromium) of the portal's main pages, with their
error states. axe finds what a machine can (labels, names, contrast, landmarks, ARIA); the keyboard
walk in test_browser.py covers some of the rest."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.factories import facility_today, make_tenant, make_user
from tests.portal.test_browser import fill_request, sign_in

AXE = Path(__file__).resolve().parents[2] / ".cache" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
RUN_AXE = """async () => {
  const tags = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];
  const result = await axe.run(document, {runOnly: {type: 'tag', values: tags}});
  return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                      nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
}"""


@pytest.fixture(scope="module")
def axe_source():
    if not AXE.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{AXE} is missing; `make test` installs axe-core with npm")
        pytest.skip("axe-core is not installed (make test installs it with npm)")
    return AXE.read_text()


def audit(page, axe_source: str, name: str) -> None:
    """Run axe on the current page (through DevTools, so the page's CSP stays as it is).

    A click that submits a form returns before the next page has loaded; axe run on a page being
    replaced finds no document, so the audit waits for the load to end first."""
    page.wait_for_load_state("load")
    page.evaluate(axe_source)
    violations = page.evaluate(RUN_AXE)
    assert violations == [], f"{name}: " + json.dumps(violations, indent=1)


def test_main_pages_pass_an_automated_wcag_audit(portal_site, new_page, db, axe_source):
    firm = make_tenant(db)
    page = new_page(portal_site)
    page.goto("/portal/sign-in")
    audit(page, axe_source, "sign-in")
    page.get_by_label("Email address").fill(firm.admin_email)
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="You could not be signed in")).to_be_visible()
    audit(page, axe_source, "sign-in with an error")
    sign_in(page, firm.admin_email)
    audit(page, axe_source, "request list")
    today = facility_today()
    fill_request(page, "community-practices", signed_on=today - timedelta(days=100),
                 expires_on=today - timedelta(days=2))
    audit(page, axe_source, "new request, authorization step with a live deficiency")
    page.get_by_role("button", name="Save and add documents").click()
    expect(page.get_by_role("button", name="Submit request")).to_be_visible()
    audit(page, axe_source, "draft request page")
    page.get_by_role("button", name="Submit request").click()
    expect(page.locator("#submit-errors")).to_be_visible()
    audit(page, axe_source, "refused submit")
    page.goto(page.url.split("#")[0] + "/edit")
    audit(page, axe_source, "edit form with deficiencies beside fields")
    page.goto("/portal/api-keys")
    audit(page, axe_source, "API keys")
    page.goto("/portal/webhooks")
    audit(page, axe_source, "webhooks")
    page.goto("/portal/requests/00000000-0000-0000-0000-000000000000")
    audit(page, axe_source, "404 page")

    staff = new_page(portal_site)
    sign_in(staff, make_user(db, ["facility_staff"], ["community-practices"]))
    audit(staff, axe_source, "staff queue")


def test_staff_pages_pass_an_automated_wcag_audit(portal_site, new_page, client, db, settings, axe_source):
    """Issue 15's pages: the staff request page (its document framed beside the checks) and a refusal on it,
    the queue with filters, search results and a refused search, and the dashboard with its table open."""
    from tests.portal.test_staff_tools import FULL, routed

    firm = make_tenant(db)
    request_id = routed(client, db, settings, firm, "community-practices",
                        documents=("authorization", "representative_authority"), **FULL)
    staff = new_page(portal_site)
    sign_in(staff, make_user(db, ["facility_staff"], ["community-practices"]))
    make_user(db, ["facility_staff"], ["community-practices"])  # a colleague to assign to
    staff.goto(f"/portal/requests/{request_id}")
    audit(staff, axe_source, "staff request page")
    staff.get_by_role("button", name="Assign", exact=True).click()  # no colleague chosen: the browser asks
    staff.evaluate("() => document.getElementById('f-user_id').removeAttribute('required')")
    staff.get_by_role("button", name="Assign", exact=True).click()
    staff.locator("#staff-actions .error-summary").wait_for()
    audit(staff, axe_source, "staff request page with a refused assignment")

    staff.goto("/portal/queue?facility=community-practices&assigned=nobody&sort=-updated_at")
    audit(staff, axe_source, "queue filtered and sorted")
    staff.get_by_label("Reference or patient name").fill("silva")
    staff.get_by_role("button", name="Apply").click()
    staff.locator("#results-title").wait_for()
    audit(staff, axe_source, "queue search results with row actions")
    staff.get_by_label("Reference or patient name").fill("s")
    staff.get_by_role("button", name="Apply").click()
    staff.locator(".error-summary").wait_for()
    audit(staff, axe_source, "queue with a refused search")

    staff.goto("/portal/dashboard")
    staff.get_by_text("The chart's numbers, day by day").click()
    audit(staff, axe_source, "dashboard with its table open")


def test_request_group_pages_pass_an_automated_wcag_audit(portal_site, new_page, db, axe_source):
    """The group's page with its checks and uploader, and after a "submit every ready request" that left one
    request behind (Lowell General is not named on the authorization)."""
    from tests import samples
    from tests.portal.test_browser import upload

    page = new_page(portal_site)
    sign_in(page, make_tenant(db).requester_email)
    today = facility_today()
    fill_request(page, "tufts-mc", signed_on=today - timedelta(days=10), expires_on=today + timedelta(days=300),
                 also=["lowell-general"])
    page.get_by_role("button", name="Save and add documents").click()
    expect(page.locator("#group-requests tbody tr")).to_have_count(2)
    audit(page, axe_source, "request group page")
    upload(page, samples.minimal_pdf(), "authorization.pdf")
    expect(page.locator(".uploads li").last).to_have_attribute("data-result", "clean", timeout=60_000)
    page.get_by_role("button", name="Submit every ready request").click()
    expect(page.locator("#submit-errors")).to_be_visible()
    audit(page, axe_source, "request group after a partly refused submit")

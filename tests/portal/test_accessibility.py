"""An automated WCAG 2.1 A/AA audit (axe-core, run in Chromium) of the portal's main pages, with their
error states. axe finds what a machine can (labels, names, contrast, landmarks, ARIA); the keyboard
walk in test_browser.py covers some of the rest."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest

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
    """Run axe on the current page (through DevTools, so the page's CSP stays as it is)."""
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
    audit(page, axe_source, "sign-in with an error")
    sign_in(page, firm.admin_email)
    audit(page, axe_source, "request list")
    today = facility_today()
    fill_request(page, "community-practices", signed_on=today - timedelta(days=100),
                 expires_on=today - timedelta(days=2))
    audit(page, axe_source, "new request, authorization step with a live deficiency")
    page.get_by_role("button", name="Save and add documents").click()
    audit(page, axe_source, "draft request page")
    page.get_by_role("button", name="Submit request").click()
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

"""Issue 16 in Chromium: the requester's list with its filters, a search that never reaches the address bar,
the CSV export, and a group's page — each page passing axe's WCAG 2.1 A/AA audit."""

from __future__ import annotations

import csv
import io

from playwright.sync_api import expect

from tests.factories import bearer, make_tenant, request_body
from tests.portal.test_accessibility import audit, axe_source  # noqa: F401  (the fixture)
from tests.portal.test_browser import sign_in


def test_filter_search_export_and_open_a_group(portal_site, new_page, client, db, axe_source):  # noqa: F811
    firm = make_tenant(db)
    body = request_body("community-practices", authorization__discloser="Tufts Medicine",
                        patient__first_name="Zoë", patient__last_name="Quintanilla")
    del body["facility"]
    group = client.post("/v1/requests", headers=bearer(firm.api_key),
                        json={**body, "facilities": ["tufts-mc", "lowell-general"]})
    assert group.status_code == 201, group.get_json()
    group_id = group.get_json()["group_id"]
    for facility in ("tufts-mc", "melrosewakefield"):
        assert client.post("/v1/requests", headers=bearer(firm.api_key),
                           json=request_body(facility)).status_code == 201

    page = new_page(portal_site)
    sign_in(page, firm.requester_email)
    page.goto("/portal/requests")
    expect(page.locator("#request-table tbody tr")).to_have_count(4)
    audit(page, axe_source, "request list with search, filters and export")

    page.get_by_label("Facility").select_option(label="Lowell General Hospital")
    page.get_by_label("Sort by").select_option(label="Last updated, newest first")
    page.get_by_role("button", name="Search or filter").click()
    expect(page.locator("#request-table tbody tr")).to_have_count(1)
    assert "facility=lowell-general" in page.url and "sort=-updated_at" in page.url

    page.get_by_role("link", name="Clear").click()
    page.get_by_label("Reference or patient name").fill("quintanilla z")
    page.get_by_role("button", name="Search or filter").click()
    expect(page.get_by_role("heading", name="Search results")).to_be_visible()
    expect(page.locator("#request-table tbody tr")).to_have_count(2)
    assert "quintanilla" not in page.url.lower()
    audit(page, axe_source, "search results")

    page.get_by_label("Reference or patient name").fill("q")
    page.get_by_role("button", name="Search or filter").click()
    expect(page.locator(".error-summary")).to_be_visible()
    audit(page, axe_source, "refused search")

    page.goto("/portal/requests?facility=tufts-mc")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download these requests as CSV").click()
    text = open(download_info.value.path(), encoding="utf-8").read()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert sorted(r["facility"] for r in rows) == ["tufts-mc", "tufts-mc"]
    assert "1980-02-29" not in text and {r["group_id"] for r in rows} == {group_id, ""}

    page.locator(f"a[href='/portal/request-groups/{group_id}']").first.click()
    expect(page.get_by_role("heading", name=body["reference"])).to_be_visible()
    expect(page.locator("#group-requests tbody tr")).to_have_count(2)
    expect(page.locator("#group-requests")).to_contain_text("Lowell General Hospital")
    audit(page, axe_source, "request group page")

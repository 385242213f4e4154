"""One form to several facilities in a real browser (Chromium, gunicorn, clamd, moto, the relay): the
"also send to" boxes, the group's page, one upload for every request through the uploader, and
"Submit every ready request"."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect

from tests import samples
from tests.factories import facility_today, make_tenant
from tests.portal.test_browser import fill_request, sign_in, upload


@pytest.fixture(scope="module")
def firm(db):
    return make_tenant(db)


def test_the_practice_fields_follow_the_other_facilities_ticked(portal_site, new_page, firm):
    page = new_page(portal_site)
    sign_in(page, firm.requester_email)
    page.goto("/portal/requests/new")
    page.locator("#f-facility").get_by_text("Tufts Medical Center").click()
    practice = page.locator("#practice-fields")
    expect(practice).to_be_hidden()
    page.get_by_label("Also send to Another location").check()
    expect(practice).to_be_visible()
    page.get_by_label("Also send to Another location").uncheck()
    expect(practice).to_be_hidden()
    # The facility chosen is not offered again among the others.
    expect(page.get_by_label("Also send to Tufts Medical Center")).to_be_disabled()


def test_one_form_one_upload_and_submit_all_for_two_facilities(portal_site, new_page, firm):
    page = new_page(portal_site)
    sign_in(page, firm.requester_email)
    today = facility_today()
    fill_request(page, "tufts-mc", signed_on=today - timedelta(days=10), expires_on=today + timedelta(days=300),
                 also=["lowell-general"], discloser="Tufts Medicine")
    page.get_by_role("button", name="Save and add documents").click()
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    rows = page.locator("#group-requests tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#group-requests")).to_contain_text("Lowell General Hospital")
    expect(page.locator('#group-requests [data-code="DOC_AUTHORIZATION_REQUIRED"]')).to_have_count(2)

    upload(page, samples.minimal_pdf(), "authorization.pdf")
    result = page.locator(".uploads li").last
    expect(result).to_have_attribute("data-result", "clean", timeout=60_000)
    expect(result).to_contain_text("Added to 2 requests.")
    # The group's checks refreshed: the signed form is in for both, nothing else stands in the way.
    expect(page.locator('#group-requests [data-code="DOC_AUTHORIZATION_REQUIRED"]')).to_have_count(0)
    expect(page.locator("#group-requests .upload-result.ok")).to_have_count(2)  # "Ready to submit" twice

    page.get_by_role("button", name="Submit every ready request").click()
    expect(page.locator('#group-requests [data-status="draft"]')).to_have_count(0)
    expect(page.locator("#submit-group")).to_have_count(0)

"""Issue 14's walk in a real browser: a law firm's request invoiced, disputed, paid and released, and the auditor's
accounting of disclosures — Debian's Chromium driven by Playwright against gunicorn, with the outbox relay, clamd,
moto's S3 and Redis all real; axe-core audits each new page (0 violations)."""

from __future__ import annotations

import io
import os
import re

import pypdf
import pytest
from playwright.sync_api import expect

from tests import samples
from tests.factories import make_tenant, make_user, unique
from tests.portal.conftest import screenshot
from tests.portal.test_accessibility import AXE, audit
from tests.portal.test_browser import sign_in, upload, wait_for_status
from tests.routing.helpers import submitted

pytestmark = pytest.mark.date_sensitive


@pytest.fixture(scope="module")
def axe_js():
    """axe-core's source, as tests/portal/test_accessibility.py finds it."""
    if not AXE.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{AXE} is missing; `make test` installs axe-core with npm")
        pytest.skip("axe-core is not installed (make test installs it with npm)")
    return AXE.read_text()


def test_invoice_dispute_payment_and_release_for_a_law_firm_then_the_accounting(portal_site, new_page, client, db,
                                                                               axe_js):
    firm = make_tenant(db, "law_firm")
    last = unique("Delacroix")
    request_id = submitted(client, firm, "tufts-mc", patient__last_name=last)  # filed through the API
    request_path = f"/portal/requests/{request_id}"

    staff = new_page(portal_site)
    sign_in(staff, make_user(db, ["facility_staff"], ["tufts-mc"]))
    staff.goto(request_path)
    wait_for_status(staff, "routed")
    staff.get_by_role("button", name="Claim").click()
    expect(staff.locator('h1 [data-status="in_progress"]')).to_be_visible()
    released = samples.minimal_pdf(pages=3, text="released records")
    upload(staff, released, "released-records.pdf")
    expect(staff.locator(".uploads li").last).to_have_attribute("data-result", "clean")
    staff.reload()

    # A refused invoice says why beside the field, keyboard first: type the pages, tick waive, press Enter.
    staff.get_by_label("Pages released").fill("312")
    staff.get_by_label("Waive the fee (financial hardship)").check()
    staff.get_by_label("Pages released").press("Enter")
    expect(staff.locator("#invoice .error-summary")).to_contain_text("Say why the fee is waived.")
    audit(staff, axe_js, "invoice form refused")
    staff.get_by_label("Waive the fee (financial hardship)").uncheck()
    staff.get_by_role("button", name="Issue invoice").click()
    expect(staff.locator('h1 [data-status="awaiting_payment"]')).to_be_visible()
    expect(staff.locator("#invoice-amount")).to_have_text("$228.57")
    expect(staff.locator("#payment-due")).to_be_visible()
    audit(staff, axe_js, "staff request page with an invoice due")
    screenshot(staff, "12-staff-invoice-due")

    # The law firm sees the invoice, how to pay, files the PDF, and disputes it.
    requester = new_page(portal_site)
    sign_in(requester, firm.requester_email)
    requester.goto(request_path)
    invoice = requester.locator("#invoice")
    expect(invoice).to_contain_text("$228.57")
    expect(invoice.locator("#invoice-lines")).to_contain_text("Pages 101 and above")
    expect(requester.locator("#how-to-pay")).to_contain_text("payable to Tufts Medical Center")
    expect(requester.locator("#how-to-pay")).to_contain_text("800 Washington Street")
    audit(requester, axe_js, "requester request page with an invoice due")
    screenshot(requester, "13-requester-invoice-how-to-pay")
    with requester.expect_download() as download:
        requester.locator("#invoice-pdf").click()
    text = pypdf.PdfReader(io.BytesIO(open(download.value.path(), "rb").read())).pages[0].extract_text()
    assert "$228.57" in text and "Pages 1–100" in text and "800 Washington Street" in text and last not in text
    assert download.value.suggested_filename.startswith("invoice-CLAIM-")
    requester.get_by_label("Dispute this invoice").fill("We received 212 pages, not 312.")
    requester.get_by_role("button", name="Dispute the invoice").click()
    expect(requester.locator("#invoice-dispute")).to_contain_text("We received 212 pages, not 312.")

    # Staff see the dispute in the queue, then record the check; the records go out with the payment.
    staff.goto("/portal/queue?status=awaiting_payment")
    expect(staff.locator(f'tr[data-request="{request_id}"]')).to_contain_text("Invoice disputed")
    audit(staff, axe_js, "staff queue with a disputed invoice")
    staff.goto(request_path)
    expect(staff.locator("#invoice-dispute")).to_contain_text("212 pages")
    staff.get_by_label("Paid by").select_option("check")
    staff.get_by_label("Check number or receipt reference").fill("CHK-1042")
    expect(staff.get_by_label("Amount received (dollars)")).to_have_value("228.57")
    staff.get_by_label("Amount received (dollars)").fill("200.00")
    staff.get_by_role("button", name="Record payment").click()
    expect(staff.locator("#invoice .error-summary")).to_contain_text("exactly 228.57 USD")
    audit(staff, axe_js, "payment refused")
    staff.get_by_label("Amount received (dollars)").fill("228.57")
    staff.get_by_role("button", name="Record payment").click()
    expect(staff.locator('h1 [data-status="fulfilled"]')).to_be_visible()
    expect(staff.locator('[data-invoice-status="paid"]')).to_be_visible()

    requester.goto(request_path)
    expect(requester.locator("#released")).to_be_visible()
    with requester.expect_download() as download:
        requester.locator('[data-download="release"]').click()
    assert open(download.value.path(), "rb").read() == released
    assert last not in requester.url and last not in requester.title()

    # Compliance finds the release in the patient's accounting (searched by POST: the URL says nothing).
    auditor = new_page(portal_site)
    sign_in(auditor, make_user(db, ["auditor"]))
    expect(auditor.get_by_role("heading", level=1)).to_have_text("Accounting of disclosures")
    audit(auditor, axe_js, "disclosures search form")
    auditor.get_by_label("First name").fill("Ana")
    auditor.get_by_label("Last name").fill(last)
    auditor.get_by_label("Date of birth").fill("1980-02-29")
    auditor.get_by_label(re.compile("Also list releases under the patient")).check()
    auditor.get_by_role("button", name="Search").click()
    row = auditor.locator(f'#disclosures tr[data-request="{request_id}"]')
    expect(row).to_contain_text("Patient authorization")
    expect(row).to_contain_text("Exempt")
    expect(row).to_contain_text("Smith & Jones LLP")
    assert auditor.url.endswith("/portal/disclosures") and last not in auditor.url
    audit(auditor, axe_js, "disclosures results")
    screenshot(auditor, "14-auditor-accounting-of-disclosures")

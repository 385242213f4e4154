"""Invoice, payment, dispute and disclosure pages through Flask's test client on both databases: refusals shown
beside the forms, how to pay, the PDF, disputes in the staff queue, and the auditor's accounting of disclosures
searched by POST (no patient data in any URL)."""

from __future__ import annotations

import io
import re

import pypdf
import pytest

from gateway.adapters import build_redis
from gateway.intake.models import RecordsRequest
from gateway.routing import relay
from gateway.routing.dispatch import RqDispatcher
from tests import samples
from tests.factories import make_tenant, make_user, unique
from tests.portal.helpers import portal_client, portal_sign_in
from tests.routing.helpers import submitted

# One database (tests/conftest.py): page rendering over service functions the API tests run on both databases.
pytestmark = [pytest.mark.date_sensitive, pytest.mark.one_database]


@pytest.fixture(scope="module")
def firm(db):
    return make_tenant(db)


def _signed_in(app, email: str):
    client = portal_client(app)
    client.csrf = portal_sign_in(client, email)
    return client


@pytest.fixture
def staff(app, db):
    return _signed_in(app, make_user(db, ["facility_staff"], ["tufts-mc"]))


@pytest.fixture
def requester(app, firm):
    return _signed_in(app, firm.requester_email)


def post(client, path: str, data=None):
    return client.post(path, data={**(data or {}), "csrf_token": client.csrf})


def status_of(db, request_id: str) -> str:
    with db.transaction() as session:
        return session.get(RecordsRequest, request_id).status


def in_progress(app, db, settings, staff, tenant, **changes) -> str:
    request_id = submitted(app.test_client(), tenant, "tufts-mc", **changes)
    dispatcher = RqDispatcher(build_redis(settings))
    while relay.publish_due(db, dispatcher, batch=100).done:
        pass
    assert post(staff, f"/portal/requests/{request_id}/claim").status_code == 303
    return request_id


def upload_release(staff, request_id: str) -> None:
    response = staff.post(f"/portal/requests/{request_id}/documents", headers={"X-CSRF-Token": staff.csrf},
                          content_type="multipart/form-data",
                          data={"kind": "release", "file": (io.BytesIO(samples.minimal_pdf(pages=2)), "records.pdf")})
    assert response.status_code in (201, 303), response.get_data(as_text=True)[:500]


def section(html: str, section_id: str) -> str:
    match = re.search(rf'<section [^>]*id="{section_id}".*?</section>', html, re.S)
    assert match, f"no #{section_id} on the page"
    return match.group(0)


def test_staff_issue_the_invoice_and_the_requester_sees_how_to_pay(app, db, settings, staff, requester, firm):
    request_id = in_progress(app, db, settings, staff, firm)
    page = f"/portal/requests/{request_id}"
    form = section(staff.get(page).get_data(as_text=True), "invoice")
    assert 'id="invoice-form"' in form and '<label for="f-invoice-pages">Pages released</label>' in form
    assert 'id="invoice"' not in requester.get(page).get_data(as_text=True)  # nothing to show before an invoice

    bad = post(staff, f"{page}/invoice", {"pages": "three hundred"})
    assert bad.status_code == 422
    refused = section(bad.get_data(as_text=True), "invoice")
    assert "Enter the number of pages released" in refused and 'aria-invalid="true"' in refused
    no_reason = post(staff, f"{page}/invoice", {"pages": "312", "waive": "on"})
    assert no_reason.status_code == 422
    refused = section(no_reason.get_data(as_text=True), "invoice")
    assert "Say why the fee is waived." in refused and 'value="312"' in refused  # the form keeps its values

    issued = post(staff, f"{page}/invoice", {"pages": "312"})
    assert issued.status_code == 303 and issued.headers["Location"].endswith("#invoice")
    assert status_of(db, request_id) == "awaiting_payment"
    staff_page = staff.get(page).get_data(as_text=True)
    assert 'id="payment-due"' in staff_page and 'id="payment-form"' in staff_page
    html = requester.get(page).get_data(as_text=True)
    invoice = section(html, "invoice")
    assert "$228.57" in invoice and "Pages 101 and above" in invoice and "M.G.L. c.111 §70" in invoice
    how = re.search(r'<p id="how-to-pay">(.*?)</p>', invoice, re.S).group(1)
    assert "Tufts Medical Center" in how and "800 Washington Street" in how
    assert 'id="payment-form"' not in invoice and 'id="dispute-form"' in invoice
    assert '<span class="status status-awaiting_payment" data-status="awaiting_payment">Awaiting payment</span>' in html
    pdf = requester.get(f"{page}/invoice.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    text = pypdf.PdfReader(io.BytesIO(pdf.data)).pages[0].extract_text()
    assert "$228.57" in text and "Tufts Medical Center" in text

    # The requester disputes; staff see it in the queue and on the request page.
    empty = post(requester, f"{page}/invoice/dispute", {"note": ""})
    assert empty.status_code == 422 and "Say what is wrong with the invoice" in empty.get_data(as_text=True)
    assert post(requester, f"{page}/invoice/dispute", {"note": "Only 200 pages arrived."}).status_code == 303
    queue = staff.get("/portal/queue?status=awaiting_payment").get_data(as_text=True)
    row = re.search(rf'<tr data-request="{request_id}".*?</tr>', queue, re.S).group(0)
    assert "Invoice disputed" in row
    assert "Only 200 pages arrived." in section(staff.get(page).get_data(as_text=True), "invoice")

    # Staff record the payment: a wrong amount is refused beside the field; the right one releases the records.
    upload_release(staff, request_id)
    wrong = post(staff, f"{page}/payments", {"method": "check", "reference": "CHK-9", "amount": "200.00"})
    assert wrong.status_code == 422
    assert "exactly 228.57 USD" in section(wrong.get_data(as_text=True), "invoice")
    assert status_of(db, request_id) == "awaiting_payment"
    paid = post(staff, f"{page}/payments", {"method": "check", "reference": "CHK-9", "amount": "228.57"})
    assert paid.status_code == 303
    assert status_of(db, request_id) == "fulfilled"
    done = requester.get(page).get_data(as_text=True)
    assert 'id="released"' in done and 'data-invoice-status="paid"' in done


def test_the_accounting_of_disclosures_page_searches_by_post_for_auditors_and_staff(app, db, settings, staff, firm):
    last = unique("Marchetti")
    request_id = in_progress(app, db, settings, staff, firm, patient__last_name=last)
    upload_release(staff, request_id)
    assert post(staff, f"/portal/requests/{request_id}/transition", {"to": "fulfilled"}).status_code == 303
    auditor = _signed_in(app, make_user(db, ["auditor"]))
    home = auditor.get("/portal/", follow_redirects=False)
    assert home.status_code == 303 and home.headers["Location"].endswith("/portal/disclosures")
    form_page = auditor.get("/portal/disclosures").get_data(as_text=True)
    assert 'method="post"' in form_page and '<label for="f-last_name">Last name</label>' in form_page
    assert 'aria-current="page">Disclosures</a>' in form_page
    query = {"first_name": "Ana", "last_name": last, "date_of_birth": "1980-02-29", "include_exempt": "on"}
    accountable_only = post(auditor, "/portal/disclosures", {**query, "include_exempt": ""})
    assert 'id="no-disclosures"' in accountable_only.get_data(as_text=True)  # an authorization release is exempt
    results = post(auditor, "/portal/disclosures", query)
    assert results.status_code == 200 and results.request.path == "/portal/disclosures"
    table = section(results.get_data(as_text=True), "disclosure-results")
    assert f'data-request="{request_id}"' in table and "Patient authorization" in table and "Exempt" in table
    assert "Smith &amp; Jones LLP" in table and "1 Main St, Boston" in table
    missing = post(auditor, "/portal/disclosures", {**query, "date_of_birth": ""})
    assert missing.status_code == 422 and "Enter the patient&#39;s date of birth." in missing.get_data(as_text=True)
    lowell = _signed_in(app, make_user(db, ["facility_staff"], ["lowell-general"]))
    assert 'id="no-disclosures"' in post(lowell, "/portal/disclosures", query).get_data(as_text=True)
    assert f'data-request="{request_id}"' in post(staff, "/portal/disclosures", query).get_data(as_text=True)
    requester = _signed_in(app, firm.requester_email)
    assert post(requester, "/portal/disclosures", query).status_code == 403

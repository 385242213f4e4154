"""Invoices and payment over HTTP (issue 14; API.md v1.1 "Invoices and payment"; M.G.L. c.111 §70): pricing on the
schedule in force on the invoice date, waivers, no-charge cases, PAYMENT_REQUIRED, payments, disputes and the
invoice PDF — against real databases, Redis, clamd and S3."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pypdf
import pytest
import time_machine
from sqlalchemy import select

from gateway.audit.models import AuditEvent
from gateway.intake.invoice_pdf import InvoiceSheet, render_invoice
from gateway.intake.payees import load_payees, payee_for
from tests.factories import bearer, make_tenant, make_user, sign_in, unique
from tests.intake.test_lifecycle_api import claimed, move, publish, upload_release, webhook_kinds

# The invoice date is judged in the facilities' calendar: .ci/run repeats these in far time zones.
pytestmark = pytest.mark.date_sensitive

# 2024-10-01 is when the October 2024 schedule took effect; 03:30 UTC is still 30 September in Boston.
SEPT_30_2330_BOSTON = datetime(2024, 10, 1, 3, 30, tzinfo=UTC)
OCT_01_0030_BOSTON = datetime(2024, 10, 1, 4, 30, tzinfo=UTC)


@pytest.fixture
def firm(db):
    return make_tenant(db, "law_firm")


@pytest.fixture
def clerk(client, db):
    return sign_in(client, make_user(db, ["facility_staff"], ["tufts-mc"]))


def subscribe(db, firm) -> None:
    """A webhook of the firm for every event type (a row, without the network check: it is never called)."""
    from gateway.db import new_id, utcnow
    from gateway.webhooks.models import Webhook
    from gateway.webhooks.service import EVENT_TYPES

    with db.transaction() as session:
        session.add(Webhook(id=new_id(), org_id=firm.org_id, url="https://hooks.example.test/x",
                            events=list(EVENT_TYPES), secret_sealed="-", active=True, created_at=utcnow(),
                            created_by="test"))


def invoice(client, headers, request_id, **body):
    return client.post(f"/v1/requests/{request_id}/invoice", headers=headers, json={"waive": False, **body})


def pay(client, headers, request_id, amount, if_match=None):
    extra = {"If-Match": if_match} if if_match else {}
    return client.post(f"/v1/requests/{request_id}/payments", headers={**headers, **extra},
                       json={"method": "check", "reference": "CHK-1042", "amount": amount})


def resource(client, headers, request_id) -> dict:
    response = client.get(f"/v1/requests/{request_id}", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def audit_actions(db, object_id: str) -> list[str]:
    with db.transaction() as session:
        return list(session.scalars(select(AuditEvent.action).where(AuditEvent.object_id == object_id)))


def event_types(client, headers, request_id) -> list[str]:
    response = client.get(f"/v1/requests/{request_id}/events?limit=100", headers=headers)
    return [e["type"] for e in response.get_json()["items"]]


# --- pricing ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("instant", "expected"), [
    (SEPT_30_2330_BOSTON, {"base": "28.38", "first": "0.95", "hundred": "95.00", "amount": "227.26",
                           "effective": "2023-10-01"}),
    (OCT_01_0030_BOSTON, {"base": "28.69", "first": "0.96", "hundred": "96.00", "amount": "228.57",
                          "effective": "2024-10-01"}),
], ids=["30-september-in-boston", "1-october-in-boston"])
def test_an_invoice_prices_the_pages_on_the_schedule_in_force_on_the_invoice_date(client, db, settings, firm, clerk,
                                                                                 instant, expected):
    request_id = claimed(client, db, settings, firm, clerk)
    before = resource(client, clerk, request_id)
    assert before["invoice"] is None
    clerk_email = make_user(db, ["facility_staff"], ["tufts-mc"])
    with time_machine.travel(instant, tick=False):
        then = sign_in(client, clerk_email)  # a token issued at the frozen instant
        issued = invoice(client, {**then, "If-Match": f'"{before["version"]}"'}, request_id, pages=312)
    assert issued.status_code == 201, issued.get_json()
    body = issued.get_json()
    assert body["amount"] == expected["amount"] and body["currency"] == "USD" and body["status"] == "due"
    assert body["basis"] == "M.G.L. c.111 §70" and body["disputed"] is False and body["paid_at"] is None
    assert body["issued_on"] == instant.astimezone(_boston()).date().isoformat()
    assert body["lines"] == [
        {"label": "Base charge", "quantity": 1, "rate": expected["base"], "amount": expected["base"]},
        {"label": "Pages 1–100", "quantity": 100, "rate": expected["first"], "amount": expected["hundred"]},
        {"label": "Pages 101 and above", "quantity": 212, "rate": "0.49", "amount": "103.88"},
    ]
    assert issued.headers["Location"].endswith(f"/v1/requests/{request_id}/invoice")
    after = resource(client, clerk, request_id)
    assert after["status"] == "awaiting_payment" and after["invoice"] == body
    assert issued.headers["ETag"] == f'"{after["version"]}"' and after["version"] > before["version"]
    requester_view = resource(client, bearer(firm.api_key), request_id)
    assert requester_view["invoice"]["amount"] == expected["amount"]
    got = client.get(f"/v1/requests/{request_id}/invoice", headers=bearer(firm.api_key))
    assert got.status_code == 200 and got.get_json() == body and got.headers["ETag"] == issued.headers["ETag"]
    assert "invoice.issue" in audit_actions(db, body["id"])
    with db.transaction() as session:
        from gateway.intake.release_models import Invoice

        assert session.get(Invoice, body["id"]).schedule_effective_on.isoformat() == expected["effective"]


def _boston():
    from zoneinfo import ZoneInfo

    return ZoneInfo("America/New_York")


def test_one_invoice_per_request_issued_only_by_its_facility_staff_from_in_progress(client, db, settings, firm,
                                                                                    clerk):
    from tests.routing.helpers import submitted

    request_id = submitted(client, firm, "tufts-mc")
    publish(db, settings)
    early = invoice(client, clerk, request_id, pages=10)
    assert early.status_code == 409 and early.get_json()["code"] == "INVALID_TRANSITION"
    assert client.post(f"/v1/requests/{request_id}/claim", headers=clerk).status_code == 200
    assert client.get(f"/v1/requests/{request_id}/invoice", headers=clerk).status_code == 404
    assert invoice(client, bearer(firm.api_key), request_id, pages=10).status_code == 403
    lowell = sign_in(client, make_user(db, ["facility_staff"], ["lowell-general"]))
    assert invoice(client, lowell, request_id, pages=10).status_code == 404
    invalid = invoice(client, clerk, request_id, pages=-1)
    assert invalid.status_code == 422 and invalid.get_json()["errors"][0]["field"] == "pages"
    stale = invoice(client, {**clerk, "If-Match": '"1"'}, request_id, pages=10)
    assert stale.status_code == 412 and stale.get_json()["code"] == "PRECONDITION_FAILED"
    assert invoice(client, clerk, request_id, pages=10).status_code == 201
    again = invoice(client, clerk, request_id, pages=10)
    assert again.status_code == 409 and again.get_json()["code"] == "INVOICE_EXISTS"


# --- payment -----------------------------------------------------------------------------------------------------

def test_payment_of_the_amount_due_releases_the_records_and_one_payment_settles_it(client, db, settings, firm, clerk):
    subscribe(db, firm)
    request_id = claimed(client, db, settings, firm, clerk)
    release = upload_release(client, clerk, request_id)
    issued = invoice(client, clerk, request_id, pages=40).get_json()
    amount = issued["amount"]
    assert amount == "67.09"  # 28.69 + 40 × 0.96 (the schedule in force today)
    assert resource(client, clerk, request_id)["status"] == "awaiting_payment"

    refused = move(client, clerk, request_id, "fulfilled")
    assert refused.status_code == 409 and refused.get_json()["code"] == "PAYMENT_REQUIRED"
    short = pay(client, clerk, request_id, "60.00")
    assert short.status_code == 422 and short.get_json()["code"] == "PAYMENT_AMOUNT_MISMATCH"
    assert short.get_json()["errors"][0]["field"] == "amount"
    as_number = client.post(f"/v1/requests/{request_id}/payments", headers=clerk,
                            json={"method": "cash", "reference": "R-1", "amount": 67.09})
    assert as_number.status_code == 422  # money is a decimal string, never a float
    assert pay(client, bearer(firm.api_key), request_id, amount).status_code == 403
    stale = pay(client, clerk, request_id, amount, if_match='"1"')
    assert stale.status_code == 412

    paid = pay(client, clerk, request_id, amount)
    assert paid.status_code == 201, paid.get_json()
    payment = paid.get_json()
    assert payment["amount"] == amount and payment["method"] == "check" and payment["reference"] == "CHK-1042"
    after = resource(client, bearer(firm.api_key), request_id)
    assert after["status"] == "fulfilled" and paid.headers["ETag"] == f'"{after["version"]}"'
    assert after["invoice"]["status"] == "paid" and after["invoice"]["paid_at"]
    assert release["id"] in [d["id"] for d in after["documents"]]  # the release is disclosed
    second = pay(client, clerk, request_id, amount)
    assert second.status_code == 409 and second.get_json()["code"] == "INVOICE_NOT_DUE"

    assert {"invoice_issued", "payment_recorded", "records_released"} <= set(
        event_types(client, bearer(firm.api_key), request_id))
    assert audit_actions(db, payment["id"]) == ["payment.record"]
    publish(db, settings)
    kinds = webhook_kinds(db, firm.org_id, request_id)
    assert {"request.invoice_issued", "request.invoice_paid", "request.document_added"} <= set(kinds)


def test_paid_before_the_records_are_uploaded_waits_for_staff_to_fulfil(client, db, settings, firm, clerk):
    request_id = claimed(client, db, settings, firm, clerk)
    amount = invoice(client, clerk, request_id, pages=0).get_json()["amount"]
    assert amount == "28.69"
    keyed = {**clerk, "Idempotency-Key": unique("pay")}
    body = {"method": "cash", "reference": "RCPT-7", "amount": amount}
    first = client.post(f"/v1/requests/{request_id}/payments", headers=keyed, json=body)
    assert first.status_code == 201, first.get_json()
    replay = client.post(f"/v1/requests/{request_id}/payments", headers=keyed, json=body)
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_json() == first.get_json()
    waiting = resource(client, clerk, request_id)
    assert waiting["status"] == "awaiting_payment" and waiting["invoice"]["status"] == "paid"
    needs = move(client, clerk, request_id, "fulfilled")
    assert needs.status_code == 409 and needs.get_json()["code"] == "RELEASE_REQUIRED"
    upload_release(client, clerk, request_id)
    released = move(client, clerk, request_id, "fulfilled")
    assert released.status_code == 200 and released.get_json()["status"] == "fulfilled"


# --- waivers and no charge -----------------------------------------------------------------------------------------

def test_a_waiver_needs_a_reason_and_releases_at_once_when_the_records_are_uploaded(client, db, settings, firm,
                                                                                   clerk):
    request_id = claimed(client, db, settings, firm, clerk, fee_waiver_requested=True)
    upload_release(client, clerk, request_id)
    no_reason = invoice(client, clerk, request_id, pages=312, waive=True)
    assert no_reason.status_code == 422 and no_reason.get_json()["code"] == "WAIVER_REASON_REQUIRED"
    assert no_reason.get_json()["errors"][0]["field"] == "waiver_reason"
    waived = invoice(client, clerk, request_id, pages=312, waive=True, waiver_reason="Financial hardship documented")
    assert waived.status_code == 201, waived.get_json()
    body = waived.get_json()
    assert body["status"] == "waived" and body["amount"] == "0.00"
    assert body["lines"][-1] == {"label": "Fee waived", "quantity": 1, "rate": "-228.57", "amount": "-228.57"}
    assert resource(client, bearer(firm.api_key), request_id)["status"] == "fulfilled"
    assert pay(client, clerk, request_id, "0.00").get_json()["code"] == "INVOICE_NOT_DUE"


@pytest.mark.parametrize("case", [
    {"delivery__method": "provider_direct"},
    {"purpose": "continuity_of_care"},
    {"purpose": "disability_determination", "public_benefit_claim": True},
], ids=["provider-direct", "continuity-of-care", "benefit-claim"])
def test_no_charge_cases_are_priced_by_the_fee_rules_and_win_over_a_waiver(client, db, settings, firm, clerk, case):
    request_id = claimed(client, db, settings, firm, clerk, **case)
    issued = invoice(client, clerk, request_id, pages=55, waive=True, waiver_reason="asked for")
    assert issued.status_code == 201, issued.get_json()
    body = issued.get_json()
    assert body["status"] == "no_charge" and body["amount"] == "0.00" and body["reason"].startswith("No fee")
    assert body["lines"] == [{"label": "Copies of records: no charge under M.G.L. c.111 §70", "quantity": 55,
                              "rate": "0.00", "amount": "0.00"}]
    # No release uploaded yet: it stays in progress, and staff release it later at no charge.
    assert resource(client, clerk, request_id)["status"] == "in_progress"
    upload_release(client, clerk, request_id)
    assert move(client, clerk, request_id, "fulfilled").get_json()["status"] == "fulfilled"


# --- disputes ------------------------------------------------------------------------------------------------------

def test_the_requester_disputes_the_invoice_and_staff_see_it_in_their_queue(client, db, settings, firm, clerk):
    subscribe(db, firm)
    request_id = claimed(client, db, settings, firm, clerk)
    path = f"/v1/requests/{request_id}/invoice/dispute"
    early = client.post(path, headers=bearer(firm.api_key), json={"note": "Too much"})
    assert early.status_code == 409 and early.get_json()["code"] == "INVOICE_REQUIRED"
    invoice(client, clerk, request_id, pages=312)
    assert client.post(path, headers=clerk, json={"note": "x"}).status_code == 403
    assert client.post(path, headers=bearer(firm.api_key), json={"note": ""}).status_code == 422
    disputed = client.post(path, headers=bearer(firm.api_key),
                           json={"note": "We received 212 pages, not 312."})
    assert disputed.status_code == 200, disputed.get_json()
    body = disputed.get_json()
    assert body["disputed"] is True and body["dispute_note"] == "We received 212 pages, not 312."
    assert body["status"] == "due" and disputed.headers["ETag"]
    other = make_tenant(db)
    assert client.post(path, headers=bearer(other.api_key), json={"note": "x"}).status_code == 404

    items = client.get("/v1/facilities/tufts-mc/queue?status=awaiting_payment&limit=100",
                       headers=clerk).get_json()["items"]
    mine = next(item for item in items if item["id"] == request_id)
    assert mine["disputed"] is True and mine["invoice_status"] == "due"
    assert resource(client, clerk, request_id)["invoice"]["disputed"] is True
    assert "invoice_disputed" in event_types(client, clerk, request_id)
    assert "invoice.dispute" in audit_actions(db, body["id"])
    publish(db, settings)
    kinds = webhook_kinds(db, firm.org_id, request_id)
    assert {"request.invoice_issued", "request.invoice_disputed", "request.status_changed"} <= set(kinds)


# --- the PDF -------------------------------------------------------------------------------------------------------

def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages)


def test_the_invoice_pdf_shows_payee_reference_lines_and_amount_and_no_patient_data(client, db, settings, firm,
                                                                                   clerk):
    reference = unique("CLAIM")
    request_id = claimed(client, db, settings, firm, clerk, reference=reference, patient__last_name="Zebulon",
                         patient__date_of_birth="1977-03-14")
    assert client.get(f"/v1/requests/{request_id}/invoice.pdf", headers=clerk).status_code == 404
    issued = invoice(client, clerk, request_id, pages=312).get_json()
    for headers in (bearer(firm.api_key), clerk):
        response = client.get(f"/v1/requests/{request_id}/invoice.pdf", headers=headers)
        assert response.status_code == 200 and response.mimetype == "application/pdf"
        assert response.headers["Content-Disposition"].startswith("attachment;")
        text = pdf_text(response.data)
        for shown in ("Tufts Medical Center", "800 Washington Street", "Boston, MA 02111", reference,
                      "M.G.L. c.111 §70", "Base charge", "Pages 1–100", "Pages 101 and above", "$228.57",
                      "$103.88", "AMOUNT DUE", "How to pay", "check payable to Tufts Medical Center", issued["id"]):
            assert shown in text, shown
        for hidden in ("Zebulon", "Ana", "1977", "03-14", "visit notes", "lab results"):
            assert hidden not in text, hidden
    assert client.get(f"/v1/requests/{request_id}/invoice.pdf",
                      headers=bearer(make_tenant(db).api_key)).status_code == 404
    assert audit_actions(db, issued["id"]).count("invoice.pdf") == 2

    amount = issued["amount"]
    upload_release(client, clerk, request_id)
    pay(client, clerk, request_id, amount)
    text = pdf_text(client.get(f"/v1/requests/{request_id}/invoice.pdf", headers=bearer(firm.api_key)).data)
    assert "PAID" in text and "Total paid: $228.57" in text and "CHK-1042" in text


def test_the_payee_file_setting_replaces_the_packaged_payees(tmp_path):
    from datetime import date

    override = tmp_path / "payees.json"
    override.write_text(json.dumps({"payees": {"tufts-mc": {
        "name": "Tufts Medical Center Release of Information", "department": "Lockbox 4417",
        "address": ["PO Box 4417", "Woburn, MA 01888"], "phone": "617-555-0100"}}}))
    payee = payee_for("tufts-mc", "Tufts Medical Center", path=str(override))
    assert payee.address == ("PO Box 4417", "Woburn, MA 01888")
    assert payee_for("lowell-general", "Lowell General Hospital", path=str(override)).address == ()
    assert load_payees()["tufts-mc"].address == ("800 Washington Street", "Boston, MA 02111")
    sheet = InvoiceSheet(invoice={"id": "inv-1", "amount": "28.69", "currency": "USD", "status": "due", "pages": 0,
                                  "issued_on": date(2026, 12, 1), "basis": "M.G.L. c.111 §70", "disputed": False,
                                  "lines": [{"label": "Base charge", "quantity": 1, "rate": "28.69",
                                             "amount": "28.69"}]},
                         reference="REF-9", request_id="req-1", facility_name="Tufts Medical Center", payee=payee,
                         bill_to="Smith & Jones LLP", schedule_effective_on=date(2024, 10, 1))
    text = pdf_text(render_invoice(sheet))
    assert "PO Box 4417" in text and "Lockbox 4417" in text and "617-555-0100" in text and "§70" in text
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"payees": {"tufts-mc": {"name": "X", "address": []}}}))
    with pytest.raises(ValueError, match=r"payees\['tufts-mc'\]\.address"):
        load_payees(str(bad))


def test_an_invoice_still_due_after_a_revocation_and_a_cure_is_paid_when_the_request_is_worked_again(
        client, db, settings, firm, clerk):
    from datetime import timedelta

    from tests.factories import facility_today

    dob, today = "1953-05-17", facility_today()  # a patient of this test alone: the revocation touches nothing else
    request_id = claimed(client, db, settings, firm, clerk, patient__date_of_birth=dob)
    upload_release(client, clerk, request_id)
    amount = invoice(client, clerk, request_id, pages=40).get_json()["amount"]
    revoked = client.post("/v1/revocations", headers=clerk, json={
        "patient": {"first_name": "Ana", "last_name": "Silva", "date_of_birth": dob},
        "recipient": "Smith & Jones LLP", "effective_on": str(today - timedelta(days=1))})
    assert revoked.get_json()["held_requests"] == [request_id]
    held = pay(client, clerk, request_id, amount)
    assert held.status_code == 409 and held.get_json()["code"] == "AUTH_REVOKED"
    assert move(client, clerk, request_id, "returned", ["AUTHORIZATION_INVALID"]).status_code == 200
    cured = client.patch(f"/v1/requests/{request_id}", headers=bearer(firm.api_key),
                         json={"authorization": {"signed_on": str(today)}})
    assert cured.status_code == 200, cured.get_json()
    assert client.post(f"/v1/requests/{request_id}/submit", headers=bearer(firm.api_key)).status_code == 202
    publish(db, settings)
    assert client.post(f"/v1/requests/{request_id}/claim", headers=clerk).status_code == 200
    again = invoice(client, clerk, request_id, pages=40)
    assert again.status_code == 409 and again.get_json()["code"] == "INVOICE_EXISTS"
    refused = move(client, clerk, request_id, "fulfilled")
    assert refused.status_code == 409 and refused.get_json()["code"] == "PAYMENT_REQUIRED"
    paid = pay(client, clerk, request_id, amount)
    assert paid.status_code == 201, paid.get_json()
    assert resource(client, bearer(firm.api_key), request_id)["status"] == "fulfilled"

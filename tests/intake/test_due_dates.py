"""Which clock set the due date, the one extension of HIPAA's access clock, and the first submission kept by a
cured request (RULES.md §9; issue 14 "Clocks"), over HTTP on both databases."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select

from gateway.audit.models import AuditEvent
from gateway.facilities.models import Facility
from gateway.outbox import OutboxMessage
from tests.factories import bearer, facility_today, make_tenant, make_user, request_body, sign_in
from tests.intake.test_lifecycle_api import publish
from tests.routing.helpers import submitted

pytestmark = pytest.mark.date_sensitive

SLOW = "melrosewakefield"
REASON = "The records are in off-site storage; retrieval takes three weeks."


@pytest.fixture
def firm(db):
    return make_tenant(db, "law_firm")


@pytest.fixture
def slow_facility(db):
    """MelroseWakefield with a 45-day target for one test: HIPAA's 30-day clock is then the earlier one."""
    with db.transaction() as session:
        facility = session.get(Facility, SLOW)
        before = (facility.turnaround_days, facility.turnaround_business_days)
        facility.turnaround_days, facility.turnaround_business_days = 45, False
    yield SLOW
    with db.transaction() as session:
        facility = session.get(Facility, SLOW)
        facility.turnaround_days, facility.turnaround_business_days = before


@pytest.fixture
def clerk(client, db):
    return sign_in(client, make_user(db, ["facility_staff"], [SLOW, "tufts-mc"]))


def personal(client, db, settings, firm, facility=SLOW) -> str:
    """The patient directs the records (purpose personal, signed by the patient): HIPAA's access clock runs."""
    request_id = submitted(client, firm, facility, purpose="personal", authorization__purpose_statement="At my request")
    publish(db, settings)
    return request_id


def extend(client, headers, request_id, reason=REASON, **extra):
    return client.post(f"/v1/requests/{request_id}/due-date/extend", headers={**headers, **extra},
                       json={"reason": reason})


def test_the_resource_says_which_clock_set_the_due_date(client, db, settings, firm, slow_facility):
    requester = bearer(firm.api_key)
    hipaa = client.get(f"/v1/requests/{personal(client, db, settings, firm)}", headers=requester).get_json()
    assert (hipaa["due_basis"], hipaa["due_rule"]) == ("hipaa_access", "45 CFR 164.524(b)(2)")
    assert hipaa["due_on"] == str(facility_today() + timedelta(days=30))  # not the facility's 45 days
    assert hipaa["due_extension"] is None
    target = client.get(f"/v1/requests/{submitted(client, firm, 'tufts-mc')}", headers=requester).get_json()
    assert (target["due_basis"], target["due_rule"]) == ("facility_target",
                                                          "Facility policy: target turnaround (5 business days)")
    draft = client.post("/v1/requests", headers=requester, json=request_body()).get_json()
    assert (draft["due_on"], draft["due_basis"], draft["due_rule"]) == (None, None, None)


def test_staff_extend_the_hipaa_clock_once_with_a_reason_and_the_requester_is_told(client, db, settings, firm, clerk,
                                                                                    slow_facility):
    request_id = personal(client, db, settings, firm)
    before = client.get(f"/v1/requests/{request_id}", headers=clerk)
    version = before.get_json()["version"]
    stale = extend(client, clerk, request_id, **{"If-Match": f'"{version - 1}"'})
    assert stale.status_code == 412
    assert extend(client, bearer(firm.api_key), request_id).status_code == 403  # requesters never extend
    missing = client.post(f"/v1/requests/{request_id}/due-date/extend", headers=clerk, json={})
    assert missing.status_code == 422 and missing.get_json()["errors"][0]["field"] == "reason"

    extended = extend(client, clerk, request_id, **{"If-Match": f'"{version}"'})
    assert extended.status_code == 200, extended.get_json()
    body = extended.get_json()
    old_due = date.fromisoformat(before.get_json()["due_on"])
    assert date.fromisoformat(body["due_on"]) == old_due + timedelta(days=30)
    assert body["due_basis"] == "hipaa_access" and body["version"] == version + 1
    assert body["due_extension"]["reason"] == REASON and body["due_extension"]["days"] == 30
    assert extended.headers["ETag"] == f'"{version + 1}"'

    again = extend(client, clerk, request_id, "Still in storage")
    assert again.status_code == 409 and again.get_json()["code"] == "ALREADY_EXTENDED"

    # The requester reads the new date and the written reason, on the resource and the timeline.
    mine = client.get(f"/v1/requests/{request_id}", headers=bearer(firm.api_key)).get_json()
    assert mine["due_on"] == body["due_on"] and mine["due_extension"]["reason"] == REASON
    events = client.get(f"/v1/requests/{request_id}/events?limit=100", headers=bearer(firm.api_key)).get_json()
    event = next(e for e in events["items"] if e["type"] == "due_date_extended")
    assert event["detail"] == {"previous_due_on": str(old_due), "due_on": body["due_on"], "note": REASON}
    # Webhook and e-mail carry the dates, never the reason.
    publish(db, settings)
    with db.transaction() as session:
        notes = [m.payload for m in session.scalars(select(OutboxMessage).where(
            OutboxMessage.request_id == request_id, OutboxMessage.kind == "notify"))]
        audited = session.scalars(select(AuditEvent.action).where(AuditEvent.object_id == request_id)).all()
        from gateway.mail.models import MailNotification

        mails = session.scalars(select(MailNotification).where(
            MailNotification.request_id == request_id,
            MailNotification.event_type == "request.due_date_extended")).all()
    extension = [n for n in notes if n["type"] == "request.due_date_extended"]
    assert [n["data"] for n in extension] == [{"request_id": request_id, "due_on": body["due_on"],
                                               "previous_due_on": str(old_due)}]
    assert "request.due_date_extended" in audited
    assert {m.user_id for m in mails} == {firm.admin_id, firm.requester_id}
    assert all("storage" not in str(m.context) for m in mails)


def test_only_the_hipaa_clock_of_an_open_request_extends(client, db, settings, firm, clerk, slow_facility):
    target = submitted(client, firm, "tufts-mc")
    publish(db, settings)
    refused = extend(client, clerk, target)
    assert refused.status_code == 409 and refused.get_json()["code"] == "DUE_DATE_NOT_EXTENDABLE"
    hipaa = personal(client, db, settings, firm)
    lowell = sign_in(client, make_user(db, ["facility_staff"], ["lowell-general"]))
    assert extend(client, lowell, hipaa).status_code == 404  # another facility's request
    assert client.post(f"/v1/requests/{hipaa}/claim", headers=clerk).status_code == 200
    assert client.post(f"/v1/requests/{hipaa}/transitions", headers=clerk,
                       json={"to": "denied", "reasons": ["OTHER"]}).status_code == 200
    closed = extend(client, clerk, hipaa)
    assert closed.status_code == 409 and closed.get_json()["code"] == "DUE_DATE_NOT_EXTENDABLE"


def test_a_cured_request_keeps_its_first_submission_due_date_and_clock(client, db, settings, firm, clerk,
                                                                        slow_facility):
    request_id = personal(client, db, settings, firm)
    first = client.get(f"/v1/requests/{request_id}", headers=bearer(firm.api_key)).get_json()
    assert client.post(f"/v1/requests/{request_id}/claim", headers=clerk).status_code == 200
    assert client.post(f"/v1/requests/{request_id}/transitions", headers=clerk,
                       json={"to": "returned", "reasons": ["INCOMPLETE"]}).status_code == 200
    # Nine days later (the machine's clock moved on), the requester fixes it and submits again.
    later = datetime.now(UTC) + timedelta(days=9)
    with time_machine.travel(later, tick=True):
        headers = bearer(firm.api_key)
        assert client.patch(f"/v1/requests/{request_id}", headers=headers,
                            json={"instructions": "Signed page attached"}).status_code == 200
        resubmitted = client.post(f"/v1/requests/{request_id}/submit", headers=headers)
        assert resubmitted.status_code == 202, resubmitted.get_json()
        assert facility_today() > date.fromisoformat(first["submitted_at"][:10])
    body = resubmitted.get_json()
    assert (body["submitted_at"], body["due_on"], body["due_basis"], body["due_rule"]) == (
        first["submitted_at"], first["due_on"], first["due_basis"], first["due_rule"])


def test_validate_says_which_clock_would_set_the_due_date(client, firm, slow_facility):
    answer = client.post("/v1/requests/validate", headers=bearer(firm.api_key),
                         json=request_body(SLOW, purpose="personal")).get_json()
    assert answer["due_basis"] == "hipaa_access"
    assert answer["due_on"] == str(facility_today() + timedelta(days=30))

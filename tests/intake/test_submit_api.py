"""Validate, submit, revocations, fix-and-resubmit and the one-shot form, over HTTP against real services."""

from __future__ import annotations

import io
import json
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from gateway.intake.models import RecordsRequest
from gateway.intake.rules import CATALOGUE
from tests import samples
from tests.factories import bearer, facility_today, make_tenant, make_user, request_body, sign_in

# Judged against the facilities' calendar: .ci/run repeats these with the machine in far time zones.
pytestmark = pytest.mark.date_sensitive

FACILITIES = ("lowell-general", "melrosewakefield", "tufts-mc", "community-practices")


@pytest.fixture(scope="module")
def firm(db):
    return make_tenant(db, "law_firm")


def create(client, tenant, body):
    response = client.post("/v1/requests", json=body, headers=bearer(tenant.api_key))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def attach(client, tenant, request_id, kind="authorization", data=None):
    response = client.post(f"/v1/requests/{request_id}/documents", headers=bearer(tenant.api_key),
                           data={"kind": kind, "file": (io.BytesIO(data or samples.minimal_pdf()), f"{kind}.pdf")},
                           content_type="multipart/form-data")
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def submit(client, tenant, request_id):
    return client.post(f"/v1/requests/{request_id}/submit", headers=bearer(tenant.api_key))


@pytest.mark.parametrize("facility", FACILITIES)
def test_a_valid_request_for_each_facility_submits(client, firm, facility):
    draft = create(client, firm, request_body(facility))
    attach(client, firm, draft["id"])
    assert client.get(f"/v1/requests/{draft['id']}", headers=bearer(firm.api_key)).get_json()["deficiencies"] == []
    response = submit(client, firm, draft["id"])
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["status"] == "submitted" and body["submitted_at"] and body["deficiencies"] == []
    assert date.fromisoformat(body["due_on"]) > facility_today()
    assert body["fee_estimate"]["status"] == "estimated" and body["fee_estimate"]["basis"] == "M.G.L. c.111 §70"
    assert body["routing"] is None  # recorded for routing, not routed until a queue has it
    events = client.get(f"/v1/requests/{draft['id']}/events", headers=bearer(firm.api_key)).get_json()["items"]
    decided = [e for e in events if e["type"] == "routing_decided"]
    assert decided and decided[0]["detail"]["queue"] == f"facility.{facility}"
    again = submit(client, firm, draft["id"])
    assert again.status_code == 202 and again.get_json()["submitted_at"] == body["submitted_at"]


def test_four_independent_problems_come_back_at_once_and_the_request_stays_draft(client, firm):
    today = facility_today()
    body = request_body(authorization__expires_on=str(today - timedelta(days=1)),
                        records__sensitive=["hiv"], facility="community-practices")
    body.pop("practice")
    draft = create(client, firm, body)
    response = submit(client, firm, draft["id"])
    assert response.status_code == 422 and response.get_json()["code"] == "REQUEST_DEFICIENT"
    codes = {e["code"] for e in response.get_json()["errors"]}
    assert {"AUTH_EXPIRED", "CONSENT_HIV_SPECIFIC_REQUIRED", "PRACTICE_REQUIRED", "DOC_AUTHORIZATION_REQUIRED"} <= codes
    for error in response.get_json()["errors"]:
        assert set(error) == {"code", "field", "message", "rule"} and error["rule"] and error["message"]
        assert "Silva" not in error["message"]
    assert client.get(f"/v1/requests/{draft['id']}", headers=bearer(firm.api_key)).get_json()["status"] == "draft"


def test_validate_is_a_dry_run(client, db, firm):
    with db.transaction() as session:
        before = session.scalar(select(func.count()).select_from(RecordsRequest))
    response = client.post("/v1/requests/validate", json=request_body(), headers=bearer(firm.api_key))
    assert response.status_code == 200
    result = response.get_json()
    assert result["valid"] is False
    assert [d["code"] for d in result["deficiencies"]] == ["DOC_AUTHORIZATION_REQUIRED"]
    assert result["required_documents"] == [{"kind": "authorization", "satisfied": False}]
    assert result["fee_estimate"]["amount"] and date.fromisoformat(result["due_on"])
    with db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(RecordsRequest)) == before
    bad = client.post("/v1/requests/validate", json={"reference": "x"}, headers=bearer(firm.api_key))
    assert bad.status_code == 422 and bad.get_json()["code"] == "VALIDATION_FAILED"


def test_fix_an_expired_authorization_and_resubmit(client, firm):
    expired = request_body(authorization__signed_on=str(facility_today() - timedelta(days=100)),
                           authorization__expires_on=str(facility_today() - timedelta(days=2)))
    draft = create(client, firm, expired)
    attach(client, firm, draft["id"])
    first = submit(client, firm, draft["id"])
    assert {e["code"] for e in first.get_json()["errors"]} == {"AUTH_EXPIRED"}
    today = facility_today()
    patch = {"authorization": {"signed_on": str(today), "expires_on": str(today + timedelta(days=90))}}
    fixed = client.patch(f"/v1/requests/{draft['id']}", json=patch, headers=bearer(firm.api_key))
    assert fixed.status_code == 200 and fixed.get_json()["deficiencies"] == []
    assert fixed.get_json()["authorization"]["signer_name"] == "Ana Silva"  # merge patch kept the rest
    assert submit(client, firm, draft["id"]).status_code == 202
    locked = client.patch(f"/v1/requests/{draft['id']}", json={"instructions": "late"}, headers=bearer(firm.api_key))
    assert locked.status_code == 409 and locked.get_json()["code"] == "REQUEST_NOT_EDITABLE"


def test_cancelled_requests_cannot_be_submitted(client, firm):
    draft = create(client, firm, request_body())
    client.post(f"/v1/requests/{draft['id']}/cancel", headers=bearer(firm.api_key))
    response = submit(client, firm, draft["id"])
    assert response.status_code == 409 and response.get_json()["code"] == "INVALID_TRANSITION"


def test_a_revocation_leaves_drafts_alone_and_blocks_their_submit(client, db):
    tenant = make_tenant(db)
    recipient = "Revoked & Partners LLP"
    body = request_body(recipient=recipient)
    body["patient"].update(first_name="Maria", last_name="O'Neil", date_of_birth="1975-06-15")
    draft = create(client, tenant, body)
    attach(client, tenant, draft["id"])
    staff = sign_in(client, make_user(db, ["facility_staff"], ["tufts-mc"]))
    requester = bearer(tenant.api_key)
    assert client.post("/v1/revocations", headers=requester, json={}).status_code == 403
    response = client.post("/v1/revocations", headers=staff, json={
        "patient": {"first_name": "maria", "last_name": "ONeil", "date_of_birth": "1975-06-15"},
        "recipient": "revoked and partners, L.L.P.", "effective_on": str(facility_today())})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["held_requests"] == []  # a draft is not in flight: its submit is refused
    assert client.get(f"/v1/requests/{draft['id']}", headers=requester).get_json()["status"] == "draft"
    refused = submit(client, tenant, draft["id"])
    assert {e["code"] for e in refused.get_json()["errors"]} == {"AUTH_REVOKED"}


def test_openapi_lists_every_deficiency_code(client):
    spec = json.dumps(client.get("/openapi.json").get_json())
    missing = [code for code in CATALOGUE if code not in spec]
    assert not missing


def one_shot(client, tenant, body, files, submit_now=True):
    data = {"request": json.dumps(body)}
    for kind, payload in files:
        data[kind] = (io.BytesIO(payload), f"{kind}.pdf")
    return client.post(f"/v1/requests?submit={'true' if submit_now else 'false'}", data=data,
                       headers=bearer(tenant.api_key), content_type="multipart/form-data")


def test_one_shot_creates_uploads_and_submits(client, firm):
    response = one_shot(client, firm, request_body(), [("authorization", samples.minimal_pdf())])
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["status"] == "submitted" and [d["kind"] for d in body["documents"]] == ["authorization"]
    assert response.headers["Location"].endswith(body["id"])


def test_one_shot_with_malware_cancels_its_draft_and_can_be_resent(client, firm):
    body = request_body()
    response = one_shot(client, firm, body, [("authorization", samples.eicar())])
    assert response.status_code == 422 and response.get_json()["code"] == "MALWARE_DETECTED"
    cancelled = response.get_json()["cancelled_request_id"]
    status = client.get(f"/v1/requests/{cancelled}", headers=bearer(firm.api_key)).get_json()["status"]
    assert status == "cancelled"
    assert one_shot(client, firm, body, [("authorization", samples.minimal_pdf())]).status_code == 201


def test_one_shot_deficient_is_refused_with_every_problem(client, firm):
    body = request_body(records__types=[])
    response = one_shot(client, firm, body, [])
    assert response.status_code == 422 and response.get_json()["code"] == "REQUEST_DEFICIENT"
    assert {e["code"] for e in response.get_json()["errors"]} == {"RECORDS_TYPES_REQUIRED",
                                                                   "DOC_AUTHORIZATION_REQUIRED"}


def test_one_shot_idempotency_replays(client, firm):
    body, key = request_body(), "one-shot-key-1-" + request_body()["reference"]
    files = [("authorization", samples.minimal_pdf())]
    first = client.post("/v1/requests?submit=true", headers={**bearer(firm.api_key), "Idempotency-Key": key},
                        data={"request": json.dumps(body), "authorization": (io.BytesIO(files[0][1]), "a.pdf")},
                        content_type="multipart/form-data")
    second = client.post("/v1/requests?submit=true", headers={**bearer(firm.api_key), "Idempotency-Key": key},
                         data={"request": json.dumps(body), "authorization": (io.BytesIO(files[0][1]), "a.pdf")},
                         content_type="multipart/form-data")
    assert first.status_code == second.status_code == 201
    assert first.get_json()["id"] == second.get_json()["id"] and second.headers["Idempotent-Replayed"] == "true"

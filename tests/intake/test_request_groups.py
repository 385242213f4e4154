"""Several facilities in one request: the group create, its read, its documents (stored once), the health
system's name on the authorization, and tenancy."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from gateway.intake.models import Document, RecordsRequest
from tests import samples
from tests.factories import bearer, make_tenant, make_user, request_body, sign_in

# Judged against the facilities' calendar: .ci/run repeats these with the machine in far time zones.
pytestmark = pytest.mark.date_sensitive

FACILITIES = ["tufts-mc", "lowell-general", "community-practices"]


@pytest.fixture(scope="module")
def firm(db):
    return make_tenant(db, "law_firm")


def group_body(facilities=FACILITIES, **changes) -> dict:
    """A create body for several facilities, the authorization naming the health system."""
    body = request_body("community-practices", **{"authorization__discloser": "Tufts Medicine", **changes})
    del body["facility"]
    return {**body, "facilities": list(facilities)}


def create_group(client, tenant, body=None, **headers):
    return client.post("/v1/requests", json=body or group_body(), headers={**bearer(tenant.api_key), **headers})


def upload(client, tenant, group_id, data: bytes, *, kind="authorization", filename="Ana Silva signed.pdf",
           headers=None):
    return client.post(f"/v1/request-groups/{group_id}/documents",
                       data={"kind": kind, "file": (io.BytesIO(data), filename, "application/pdf")},
                       headers={**bearer(tenant.api_key), **(headers or {})}, content_type="multipart/form-data")


def test_one_draft_per_facility_each_checked_on_its_own(client, firm):
    body = group_body()
    response = create_group(client, firm, body)
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert set(created) == {"group_id", "requests"}
    assert response.headers["Location"].endswith(f"/v1/request-groups/{created['group_id']}")
    assert "ETag" not in response.headers
    requests = created["requests"]
    assert [r["facility"] for r in requests] == FACILITIES  # in the order given
    assert len({r["id"] for r in requests}) == 3
    assert {r["reference"] for r in requests} == {body["reference"]} and {r["status"] for r in requests} == {"draft"}
    for req in requests:
        codes = {d["code"] for d in req["deficiencies"]}
        # "Tufts Medicine" names every facility of the system: only the signed form is missing.
        assert codes == {"DOC_AUTHORIZATION_REQUIRED"}, (req["facility"], codes)
    # Each is priced and dated by its own facility: Tufts counts business days, Lowell calendar days.
    assert requests[0]["fee_estimate"] and requests[1]["fee_estimate"]

    read = client.get(f"/v1/request-groups/{created['group_id']}", headers=bearer(firm.api_key))
    assert read.status_code == 200
    group = read.get_json()
    assert group["id"] == created["group_id"] and group["reference"] == body["reference"]
    assert sorted(r["id"] for r in group["requests"]) == sorted(r["id"] for r in requests)
    single = client.get(f"/v1/requests/{requests[1]['id']}", headers=bearer(firm.api_key)).get_json()
    assert single["facility"] == "lowell-general" and single["status"] == "draft"


def test_another_systems_name_is_still_a_mismatch(client, firm):
    body = group_body(["tufts-mc"], authorization__discloser="Mass General Brigham")
    codes = {d["code"] for d in create_group(client, firm, body).get_json()["requests"][0]["deficiencies"]}
    assert "AUTH_DISCLOSER_MISMATCH" in codes


@pytest.mark.parametrize(("change", "field", "code"), [
    ({"facilities": []}, "facilities", "INVALID_FIELD"),
    ({"facilities": ["tufts-mc", "tufts-mc"]}, "facilities", "INVALID_FIELD"),
    ({"facilities": "tufts-mc"}, "facilities", "INVALID_FIELD"),
    ({"facility": "tufts-mc"}, "facility", "UNKNOWN_FIELD"),
])
def test_bad_facility_lists_are_field_errors(client, firm, change, field, code):
    response = create_group(client, firm, {**group_body(), **change})
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    assert {(e["field"], e["code"]) for e in response.get_json()["errors"]} == {(field, code)}


def test_reference_is_idempotent_per_organization_and_facility(client, db, firm):
    body = group_body(["tufts-mc", "lowell-general"])
    assert create_group(client, firm, body).status_code == 201
    again = create_group(client, firm, body)
    assert again.status_code == 409 and again.get_json()["code"] == "DUPLICATE_REFERENCE"
    # One facility already holding the reference refuses the whole group: nothing else is created.
    overlapping = create_group(client, firm, {**body, "facilities": ["melrosewakefield", "lowell-general"]})
    assert overlapping.status_code == 409
    with db.sessions() as session:
        facilities = session.scalars(select(RecordsRequest.facility).where(
            RecordsRequest.reference == body["reference"])).all()
    assert sorted(facilities) == ["lowell-general", "tufts-mc"]
    # A single request for another facility under the same reference joins them; for the same one it cannot.
    single = request_body("melrosewakefield", reference=body["reference"])
    assert client.post("/v1/requests", json=single, headers=bearer(firm.api_key)).status_code == 201
    single = request_body("tufts-mc", reference=body["reference"])
    assert client.post("/v1/requests", json=single, headers=bearer(firm.api_key)).status_code == 409


def test_same_idempotency_key_replays_the_group(client, firm):
    body = group_body(["tufts-mc", "lowell-general"])
    first = create_group(client, firm, body, **{"Idempotency-Key": f"group-{body['reference']}"})
    second = create_group(client, firm, body, **{"Idempotency-Key": f"group-{body['reference']}"})
    assert first.status_code == second.status_code == 201
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert second.get_json()["group_id"] == first.get_json()["group_id"]


def test_a_group_document_is_stored_once_and_belongs_to_each_request(client, db, firm):
    created = create_group(client, firm).get_json()
    group_id, ids = created["group_id"], [r["id"] for r in created["requests"]]
    # One request leaves the draft state: the document goes to the others only.
    assert client.post(f"/v1/requests/{ids[2]}/cancel", headers=bearer(firm.api_key)).status_code == 200
    pdf = samples.minimal_pdf(pages=2)
    response = upload(client, firm, group_id, pdf)
    assert response.status_code == 201, response.get_json()
    items = response.get_json()["items"]
    assert sorted(i["request_id"] for i in items) == sorted(ids[:2])
    assert {i["document"]["pages"] for i in items} == {2} and len({i["document"]["id"] for i in items}) == 2
    with db.sessions() as session:
        keys = session.scalars(select(Document.storage_key).where(Document.request_id.in_(ids))).all()
    assert len(keys) == 2 and len(set(keys)) == 1  # one stored object, linked to both requests
    for request_id in ids[:2]:
        req = client.get(f"/v1/requests/{request_id}", headers=bearer(firm.api_key)).get_json()
        assert [d["kind"] for d in req["documents"]] == ["authorization"]
        assert req["deficiencies"] == []  # the signed form satisfies each request on its own
        document_id = req["documents"][0]["id"]
        content = client.get(f"/v1/requests/{request_id}/documents/{document_id}/content",
                             headers=bearer(firm.api_key))
        assert content.status_code == 302
        submitted = client.post(f"/v1/requests/{request_id}/submit", headers=bearer(firm.api_key))
        assert submitted.status_code == 202, submitted.get_json()
    cancelled = client.get(f"/v1/requests/{ids[2]}", headers=bearer(firm.api_key)).get_json()
    assert cancelled["documents"] == []
    # Every request of the group is now closed to uploads: nothing is stored.
    with db.sessions() as session:
        before = session.scalar(select(func.count()).select_from(Document))
    refused = upload(client, firm, group_id, pdf)
    assert refused.status_code == 409 and refused.get_json()["code"] == "REQUEST_NOT_EDITABLE"
    with db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Document)) == before


def test_malware_sent_to_a_group_is_stored_nowhere(client, db, firm):
    created = create_group(client, firm, group_body(["tufts-mc", "lowell-general"])).get_json()
    response = upload(client, firm, created["group_id"], samples.eicar(), filename="scan.pdf")
    assert response.status_code == 422 and response.get_json()["code"] == "MALWARE_DETECTED"
    for req in created["requests"]:
        events = client.get(f"/v1/requests/{req['id']}/events", headers=bearer(firm.api_key)).get_json()["items"]
        assert "upload_blocked" in {e["type"] for e in events}
        assert client.get(f"/v1/requests/{req['id']}", headers=bearer(firm.api_key)).get_json()["documents"] == []


def test_another_tenant_and_staff_never_see_the_group(client, db, firm):
    created = create_group(client, firm, group_body(["tufts-mc"])).get_json()
    other = make_tenant(db, "law_firm")
    for path in (f"/v1/request-groups/{created['group_id']}", "/v1/request-groups/no-such-group"):
        response = client.get(path, headers=bearer(other.api_key))
        assert response.status_code == 404 and response.get_json()["code"] == "NOT_FOUND"
    refused = upload(client, other, created["group_id"], samples.minimal_pdf())
    assert refused.status_code == 404
    clerk = sign_in(client, make_user(db, ["facility_staff"], ["tufts-mc"]))
    assert client.get(f"/v1/request-groups/{created['group_id']}", headers=clerk).status_code == 403


def test_the_portal_shows_the_group_with_each_requests_status(app, client, db, firm):
    from tests.portal.helpers import portal_client, portal_sign_in

    created = create_group(client, firm, group_body(["tufts-mc", "lowell-general"])).get_json()
    ids = [r["id"] for r in created["requests"]]
    assert client.post(f"/v1/requests/{ids[1]}/cancel", headers=bearer(firm.api_key)).status_code == 200
    browser = portal_client(app)
    portal_sign_in(browser, firm.requester_email)
    page = browser.get(f"/portal/request-groups/{created['group_id']}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert all(f'data-request-id="{request_id}"' in html for request_id in ids)
    assert "Tufts Medical Center" in html and "Lowell General Hospital" in html and "Cancelled" in html
    detail = browser.get(f"/portal/requests/{ids[0]}").get_data(as_text=True)
    assert f"/portal/request-groups/{created['group_id']}" in detail
    other = portal_client(app)
    portal_sign_in(other, make_tenant(db, "law_firm").requester_email)
    assert other.get(f"/portal/request-groups/{created['group_id']}").status_code == 404

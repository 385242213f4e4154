"""The request resource over HTTP: create, validation, duplicates, idempotency, list, read, cancel, tenancy."""

from __future__ import annotations

import uuid

import pytest

from tests.factories import bearer, make_tenant, make_user, request_body, sign_in

# Judged against the facilities' calendar: .ci/run repeats these with the machine in far time zones.
pytestmark = pytest.mark.date_sensitive

RESOURCE_KEYS = {"id", "reference", "status", "facility", "pathway", "purpose", "patient", "records", "delivery",
                 "authorization", "documents", "required_documents", "deficiencies", "routing", "fee_estimate",
                 "due_on", "created_at", "updated_at", "submitted_at"}


@pytest.fixture(scope="module")
def firm(db):
    return make_tenant(db, "law_firm")


@pytest.fixture(scope="module")
def other_firm(db):
    return make_tenant(db, "law_firm")


def create(client, tenant, body=None, **headers):
    return client.post("/v1/requests", json=body or request_body(), headers={**bearer(tenant.api_key), **headers})


def test_create_returns_the_draft_resource(client, firm):
    response = create(client, firm)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert RESOURCE_KEYS <= set(body)
    assert body["status"] == "draft" and body["documents"] == [] and body["routing"] is None
    assert response.headers["Location"].endswith(f"/v1/requests/{body['id']}")
    uuid.UUID(body["id"])  # opaque, random id
    assert body["patient"]["date_of_birth"] == "1980-02-29"
    assert {"kind": "authorization", "satisfied": False} in body["required_documents"]
    assert "DOC_AUTHORIZATION_REQUIRED" in {d["code"] for d in body["deficiencies"]}
    assert body["fee_estimate"]["currency"] == "USD"
    events = client.get(f"/v1/requests/{body['id']}/events", headers=bearer(firm.api_key)).get_json()["items"]
    assert [(e["type"], e["status"]) for e in events] == [("created", "draft")]


def test_read_back_and_audited(client, db, firm):
    created = create(client, firm).get_json()
    response = client.get(f"/v1/requests/{created['id']}", headers=bearer(firm.api_key))
    assert response.status_code == 200 and response.get_json()["id"] == created["id"]
    auditor = sign_in(client, make_user(db, ["auditor"]))
    entries = client.get("/v1/audit", headers=auditor,
                         query_string={"request_id": response.headers["X-Request-ID"]}).get_json()["items"]
    assert [(e["action"], e["object"]) for e in entries] == [("request.read", f"request:{created['id']}")]


@pytest.mark.parametrize(("change", "field", "code"), [
    ({"org": "someone"}, "org", "UNKNOWN_FIELD"),
    ({"status": "routed"}, "status", "UNKNOWN_FIELD"),
    ({"reference": "x" * 101}, "reference", "INVALID_FIELD"),
    ({"reference": "   "}, "reference", "INVALID_FIELD"),
    ({"pathway": "telepathy"}, "pathway", "INVALID_FIELD"),
    ({"patient__date_of_birth": "2026-02-30"}, "patient.date_of_birth", "INVALID_FIELD"),
    ({"patient__date_of_birth": "1066-10-14"}, "patient.date_of_birth", "INVALID_FIELD"),
    ({"patient__first_name": "Ana\u202eevil"}, "patient.first_name", "INVALID_FIELD"),
    ({"records__types": ["visit_notes", "horoscope"]}, "records.types.1", "INVALID_FIELD"),
    ({"authorization__statements__extra": True}, "authorization.statements.extra", "UNKNOWN_FIELD"),
    ({"instructions": "a" * 2001}, "instructions", "INVALID_FIELD"),
])
def test_bad_bodies_get_field_level_problems(client, firm, change, field, code):
    body = request_body()
    for dotted, value in change.items():
        target, *path = body, *dotted.split("__")
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    response = create(client, firm, body)
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    errors = response.get_json()["errors"]
    assert {"code": code, "field": field} in [{"code": e["code"], "field": e["field"]} for e in errors], errors


def test_missing_required_sections_and_non_json(client, firm):
    response = create(client, firm, {"reference": "R-1"})
    assert response.status_code == 422
    assert {"facility", "pathway", "purpose", "patient", "records", "delivery"} <= {
        e["field"] for e in response.get_json()["errors"] if e["code"] == "FIELD_REQUIRED"}
    not_json = client.post("/v1/requests", data="reference=x", headers=bearer(firm.api_key),
                           content_type="application/x-www-form-urlencoded")
    assert not_json.status_code == 400 and not_json.get_json()["code"] == "BODY_NOT_JSON"


def test_oversized_json_body_is_413(client, firm):
    body = request_body(instructions="x" * (2 * 1024 * 1024))
    response = create(client, firm, body)
    assert response.status_code == 413 and response.mimetype == "application/problem+json"


def test_duplicate_open_reference_is_409_until_cancelled(client, firm):
    body = request_body()
    first = create(client, firm, body)
    assert first.status_code == 201
    again = create(client, firm, body)
    assert again.status_code == 409 and again.get_json()["code"] == "DUPLICATE_REFERENCE"
    cancelled = client.post(f"/v1/requests/{first.get_json()['id']}/cancel", headers=bearer(firm.api_key))
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"
    assert create(client, firm, body).status_code == 201  # the reference is free again


def test_same_reference_in_another_organization_is_fine(client, firm, other_firm):
    body = request_body()
    assert create(client, firm, body).status_code == 201
    assert create(client, other_firm, body).status_code == 201


def test_idempotency_key_replays_conflicts_and_rejects_reuse(client, db, firm):
    from sqlalchemy import func, select

    from gateway.intake.models import RecordsRequest

    body, key = request_body(), f"key-{uuid.uuid4()}"
    first = create(client, firm, body, **{"Idempotency-Key": key})
    second = create(client, firm, body, **{"Idempotency-Key": key})
    assert first.status_code == second.status_code == 201
    assert first.get_json()["id"] == second.get_json()["id"]
    assert second.headers["Idempotent-Replayed"] == "true" and second.headers["Location"] == first.headers["Location"]
    with db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(RecordsRequest).where(
            RecordsRequest.reference == body["reference"])) == 1
    reused = create(client, firm, {**body, "reference": "another"}, **{"Idempotency-Key": key})
    assert reused.status_code == 422 and reused.get_json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    # Keys are per principal: another organization's identical key is its own.
    other = make_tenant(db)
    assert create(client, other, body, **{"Idempotency-Key": key}).status_code == 201
    bad = create(client, firm, body, **{"Idempotency-Key": "x" * 256})
    assert bad.status_code == 422 and bad.get_json()["code"] == "IDEMPOTENCY_KEY_INVALID"


def test_idempotency_key_in_flight_is_409(client, db, firm):
    from gateway import idempotency

    key = f"key-{uuid.uuid4()}"
    idempotency.claim(db, principal=f"api_key:{firm.api_key_id}", key=key, print_="x")
    response = create(client, firm, request_body(), **{"Idempotency-Key": key})
    assert response.status_code == 409 and response.get_json()["code"] == "IDEMPOTENCY_KEY_IN_FLIGHT"


def test_client_errors_replay_too(client, firm):
    key, body = f"key-{uuid.uuid4()}", request_body(pathway="telepathy")
    first = create(client, firm, body, **{"Idempotency-Key": key})
    second = create(client, firm, body, **{"Idempotency-Key": key})
    assert first.status_code == second.status_code == 422
    assert first.get_json()["errors"] == second.get_json()["errors"]


def test_list_filters_and_pagination(client, db):
    tenant = make_tenant(db)
    made = [create(client, tenant, request_body(facility=f)).get_json()
            for f in ("tufts-mc", "tufts-mc", "lowell-general")]
    headers = bearer(tenant.api_key)
    page = client.get("/v1/requests?limit=2", headers=headers).get_json()
    assert [r["id"] for r in page["items"]] == [made[2]["id"], made[1]["id"]] and page["next_cursor"]
    rest = client.get(f"/v1/requests?limit=2&cursor={page['next_cursor']}", headers=headers).get_json()
    assert [r["id"] for r in rest["items"]] == [made[0]["id"]] and rest["next_cursor"] is None
    tufts = client.get("/v1/requests?facility=tufts-mc", headers=headers).get_json()["items"]
    assert {r["id"] for r in tufts} == {made[0]["id"], made[1]["id"]}
    by_reference = client.get(f"/v1/requests?reference={made[2]['reference']}", headers=headers).get_json()
    assert [r["id"] for r in by_reference["items"]] == [made[2]["id"]]
    assert client.get("/v1/requests?status=routed", headers=headers).get_json()["items"] == []
    assert client.get("/v1/requests?status=bogus", headers=headers).status_code == 422


def test_other_tenants_requests_are_404_and_unlisted(client, db, firm, other_firm):
    mine = create(client, firm).get_json()
    theirs = bearer(other_firm.api_key)
    missing = str(uuid.uuid4())
    for suffix in ("", "/events"):
        foreign = client.get(f"/v1/requests/{mine['id']}{suffix}", headers=theirs)
        absent = client.get(f"/v1/requests/{missing}{suffix}", headers=theirs)
        assert foreign.status_code == absent.status_code == 404
        assert {k: v for k, v in foreign.get_json().items() if k != "request_id"} == \
               {k: v for k, v in absent.get_json().items() if k != "request_id"}
    assert client.post(f"/v1/requests/{mine['id']}/cancel", headers=theirs).status_code == 404
    listed = client.get("/v1/requests?limit=100", headers=theirs).get_json()["items"]
    assert mine["id"] not in {r["id"] for r in listed}
    # Facility staff see nothing until a request is routed to them; auditors and operators see no PHI.
    for roles, facilities in ((["facility_staff"], ["tufts-mc"]), (["auditor"], []), (["gateway_admin"], [])):
        headers = sign_in(client, make_user(db, roles, facilities))
        assert client.get(f"/v1/requests/{mine['id']}", headers=headers).status_code in (403, 404)


def test_scopes_are_enforced_for_api_keys(client, db):
    read_only = make_tenant(db, scopes=("requests:read",))
    response = create(client, read_only)
    assert response.status_code == 403 and response.get_json()["code"] == "FORBIDDEN"
    assert client.get("/v1/requests", headers=bearer(read_only.api_key)).status_code == 200


def test_cancel_twice_is_409(client, firm):
    created = create(client, firm).get_json()
    url = f"/v1/requests/{created['id']}/cancel"
    assert client.post(url, headers=bearer(firm.api_key)).status_code == 200
    again = client.post(url, headers=bearer(firm.api_key))
    assert again.status_code == 409 and again.get_json()["code"] == "INVALID_TRANSITION"
    events = client.get(f"/v1/requests/{created['id']}/events", headers=bearer(firm.api_key)).get_json()["items"]
    assert [e["status"] for e in events] == ["draft", "cancelled"]

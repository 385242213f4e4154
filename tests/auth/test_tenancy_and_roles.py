"""Roles (403), tenant isolation (404 identical to missing), mass assignment, and auth on every route."""

from __future__ import annotations

import re
import uuid

import pytest

from gateway.auth import web as auth_web
from gateway.auth.models import ApiKey, Organization, User
from gateway.fhir import views as fhir_views
from tests.factories import bearer, make_tenant, make_user, sign_in


@pytest.fixture(scope="module")
def firm_a(db):
    return make_tenant(db, "law_firm")


@pytest.fixture(scope="module")
def firm_b(db):
    return make_tenant(db, "insurer")


def _strip(response):
    return {k: v for k, v in response.get_json().items() if k != "request_id"}


def test_every_route_requires_authentication_unless_public(app, client):
    """A route added later without auth fails here."""
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.rule in auth_web.PUBLIC_RULES:
            continue
        if rule.rule.startswith(auth_web.SESSION_AUTHENTICATED_PREFIX + "/"):
            continue  # the portal's session guard; tests/portal walks those routes the same way
        fhir = rule.rule.startswith(auth_web.FHIR_PREFIX + "/")
        if fhir and rule.rule in fhir_views.PUBLIC_RULES:
            continue
        path = re.sub(r"<(?:[^:>]+:)?[^>]+>", lambda _: str(uuid.uuid4()), rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(path, method=method, json={})
            assert response.status_code == 401, f"{method} {rule.rule} answered {response.status_code}"
            if fhir:  # the FHIR guard answers in FHIR's error shape
                assert response.get_json()["resourceType"] == "OperationOutcome", rule.rule
            else:
                assert response.get_json()["code"] == "UNAUTHENTICATED"
            checked += 1
    assert checked >= 8


def test_public_routes_answer_without_credentials(client):
    for path in ["/healthz", "/metrics", "/openapi.json", "/v1/facilities", "/.well-known/jwks.json"]:
        assert client.get(path).status_code == 200, path


def test_jwks_publishes_only_public_okp_keys(client):
    keys = client.get("/.well-known/jwks.json").get_json()["keys"]
    assert keys
    for key in keys:
        assert key["kty"] == "OKP" and key["alg"] == "EdDSA" and key["kid"]
        assert "d" not in key  # no private part


def test_requester_calling_auditor_and_admin_endpoints_is_403(client, firm_a):
    requester = sign_in(client, firm_a.requester_email)
    for headers in (requester, bearer(firm_a.api_key)):
        assert client.get("/v1/audit", headers=headers).status_code == 403
        assert client.get(f"/v1/orgs/{firm_a.org_id}/api-keys", headers=headers).status_code == 403
        response = client.post(f"/v1/orgs/{firm_a.org_id}/api-keys", headers=headers,
                               json={"scopes": ["requests:read"]})
        assert response.status_code == 403 and response.get_json()["code"] == "FORBIDDEN"


def test_staff_and_auditor_cannot_manage_requester_keys(client, db, firm_a):
    for roles, facilities in ((["facility_staff"], ["tufts-mc"]), (["auditor"], [])):
        headers = sign_in(client, make_user(db, roles, facilities))
        assert client.get(f"/v1/orgs/{firm_a.org_id}/api-keys", headers=headers).status_code == 403


def test_cross_tenant_reads_are_404_identical_to_missing(client, firm_a, firm_b):
    admin_a = sign_in(client, firm_a.admin_email)
    missing_org, missing_key = str(uuid.uuid4()), str(uuid.uuid4())
    probes = [
        (f"/v1/orgs/{firm_b.org_id}/api-keys", f"/v1/orgs/{missing_org}/api-keys"),
        (f"/v1/orgs/{firm_b.org_id}/users", f"/v1/orgs/{missing_org}/users"),
        (f"/v1/orgs/{firm_b.org_id}/api-keys/{firm_b.api_key_id}", f"/v1/orgs/{missing_org}/api-keys/{missing_key}"),
        # B's key addressed under A's own organization.
        (f"/v1/orgs/{firm_a.org_id}/api-keys/{firm_b.api_key_id}", f"/v1/orgs/{firm_a.org_id}/api-keys/{missing_key}"),
    ]
    for foreign, missing in probes:
        a, b = client.get(foreign, headers=admin_a), client.get(missing, headers=admin_a)
        assert a.status_code == b.status_code == 404, foreign
        assert _strip(a) == _strip(b)
    deleted = client.delete(f"/v1/orgs/{firm_b.org_id}/api-keys/{firm_b.api_key_id}", headers=admin_a)
    assert deleted.status_code == 404
    assert client.get("/v1/me", headers=bearer(firm_b.api_key)).status_code == 200  # B's key still works


def test_cross_tenant_probe_is_audited_as_denied(client, db, firm_a, firm_b):
    from sqlalchemy import select

    from gateway.audit.models import AuditEvent

    admin_a = sign_in(client, firm_a.admin_email)
    response = client.get(f"/v1/orgs/{firm_b.org_id}/api-keys", headers=admin_a)
    with db.transaction() as session:
        entry = session.scalars(select(AuditEvent).where(
            AuditEvent.request_id == response.headers["X-Request-ID"])).one()
    assert (entry.action, entry.result, entry.object_id) == ("access.denied", "denied", firm_b.org_id)


def test_mass_assignment_cannot_set_org_roles_or_status(client, db, firm_a, firm_b):
    admin_a = sign_in(client, firm_a.admin_email)
    response = client.post(f"/v1/orgs/{firm_a.org_id}/api-keys", headers=admin_a,
                           json={"scopes": ["requests:read"], "org": firm_b.org_id, "org_id": firm_b.org_id})
    assert response.status_code == 422
    assert {e["field"] for e in response.get_json()["errors"]} >= {"org", "org_id"}
    response = client.post(f"/v1/orgs/{firm_a.org_id}/users", headers=admin_a,
                           json={"email": "mass@example.test", "password": "long enough password",
                                 "roles": ["gateway_admin"], "status": "active", "org": firm_b.org_id})
    assert response.status_code == 422
    assert {e["code"] for e in response.get_json()["errors"]} == {"UNKNOWN_FIELD"}
    response = client.post(f"/v1/orgs/{firm_a.org_id}/users", headers=admin_a,
                           json={"email": "promote@example.test", "password": "long enough password",
                                 "role": "gateway_admin"})
    assert response.status_code == 422
    with db.transaction() as session:
        from sqlalchemy import select

        emails = ["mass@example.test", "promote@example.test"]
        assert session.scalars(select(User).where(User.email.in_(emails))).all() == []
        assert session.get(Organization, firm_b.org_id).active
        keys = session.scalars(select(ApiKey).where(ApiKey.org_id == firm_b.org_id)).all()
        assert [k.id for k in keys] == [firm_b.api_key_id]


def test_requester_admin_manages_keys_and_users(client, db, firm_a):
    admin_a = sign_in(client, firm_a.admin_email)
    created = client.post(f"/v1/orgs/{firm_a.org_id}/api-keys", headers=admin_a,
                          json={"name": "claims system", "scopes": ["requests:write", "requests:read"],
                                "expires_in_days": 30})
    assert created.status_code == 201
    body = created.get_json()
    assert body["key"].startswith(body["prefix"]) and body["org"] == firm_a.org_id
    assert created.headers["Location"].endswith(body["id"])
    assert client.get("/v1/me", headers=bearer(body["key"])).get_json()["scopes"] == ["requests:read", "requests:write"]
    listed = client.get(f"/v1/orgs/{firm_a.org_id}/api-keys?limit=1", headers=admin_a).get_json()
    assert len(listed["items"]) == 1 and listed["next_cursor"]
    assert all("key" not in item and "secret_hash" not in item for item in listed["items"])
    rest = client.get(f"/v1/orgs/{firm_a.org_id}/api-keys?limit=100&cursor={listed['next_cursor']}",
                      headers=admin_a).get_json()
    assert listed["items"][0]["id"] not in {item["id"] for item in rest["items"]}
    assert client.delete(f"/v1/orgs/{firm_a.org_id}/api-keys/{body['id']}", headers=admin_a).status_code == 204
    assert client.get("/v1/me", headers=bearer(body["key"])).status_code == 401
    user = client.post(f"/v1/orgs/{firm_a.org_id}/users", headers=admin_a,
                       json={"email": f"new-{uuid.uuid4().hex[:6]}@example.test", "password": "long enough password"})
    assert user.status_code == 201 and user.get_json()["roles"] == ["requester"]
    assert "password" not in user.get_json() and "password_hash" not in user.get_json()


def test_bad_cursor_and_limit_are_problems(client, firm_a):
    admin_a = sign_in(client, firm_a.admin_email)
    bad = client.get(f"/v1/orgs/{firm_a.org_id}/api-keys?cursor=!!notours", headers=admin_a)
    assert bad.status_code == 400 and bad.get_json()["code"] == "INVALID_CURSOR"
    over = client.get(f"/v1/orgs/{firm_a.org_id}/api-keys?limit=1000", headers=admin_a)
    assert over.status_code == 422 and over.get_json()["errors"][0]["field"] == "limit"

"""Least privilege, route by route: what every role gets from every route of the API and the portal.

The tables below are the rights of API.md v1.1 ("Principals", "Abuse and least
privilege"): operators (`gateway_admin`) manage organizations and users but get
no request, document, patient, API-key or webhook data and record no
revocations; auditors read the audit trail and, since issue 14, the accounting of
disclosures (45 CFR 164.528), and nothing else.  The tests walk
the app's URL map, so a route added later without a line here fails until
someone decides who may call it.
"""

from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy import select

from gateway.audit.models import AuditEvent
from gateway.auth import web as auth_web
from gateway.auth.models import ApiKey, User
from gateway.auth.service import create_organization
from gateway.portal.web import PUBLIC_ENDPOINTS
from tests.factories import PASSWORD, bearer, make_tenant, make_user, sign_in, unique
from tests.portal.helpers import portal_client, portal_sign_in
from tests.routing.helpers import submitted

# One database (tests/conftest.py): which role reaches which route, decided before any query.
pytestmark = pytest.mark.one_database

ROLES = ("requester", "api_key", "requester_admin", "facility_staff", "auditor", "gateway_admin")
IN = "in"  # past the role check: whatever the route answers then (200, 404, 422...), never 401 or 403
DENIED = 403


def row(*allowed: str, operator: int | None = None, auditor: int | None = None) -> dict:
    """One route's line: the roles let in, with the operator's and the auditor's exact answers."""
    line = {role: IN if role in allowed else DENIED for role in ROLES}
    line["gateway_admin"] = operator if operator is not None else line["gateway_admin"]
    line["auditor"] = auditor if auditor is not None else line["auditor"]
    return line


REQUESTERS = ("requester", "api_key", "requester_admin")
PEOPLE = ("requester", "requester_admin", "facility_staff", "auditor", "gateway_admin")
READERS = (*REQUESTERS, "facility_staff")

# (method, rule) → role → 403, an exact status, or IN.  Operators and auditors always get an exact status.
API_RIGHTS = {
    ("GET", "/v1/me"): row(*ROLES, operator=200, auditor=200),
    ("POST", "/v1/orgs/<org_id>/api-keys"): row("requester_admin"),
    ("GET", "/v1/orgs/<org_id>/api-keys"): row("requester_admin"),
    ("GET", "/v1/orgs/<org_id>/api-keys/<key_id>"): row("requester_admin"),
    ("DELETE", "/v1/orgs/<org_id>/api-keys/<key_id>"): row("requester_admin"),
    # Operators add only an organization's first admin; this organization has one (see test below).
    ("POST", "/v1/orgs/<org_id>/users"): row("requester_admin", operator=403),
    ("GET", "/v1/orgs/<org_id>/users"): row("requester_admin", operator=200),
    ("GET", "/v1/audit"): row("auditor", auditor=200),
    ("POST", "/v1/webhooks"): row("requester_admin"),
    ("GET", "/v1/webhooks"): row("requester_admin"),
    ("GET", "/v1/webhooks/<webhook_id>"): row("requester_admin"),
    ("DELETE", "/v1/webhooks/<webhook_id>"): row("requester_admin"),
    ("GET", "/v1/webhooks/<webhook_id>/deliveries"): row("requester_admin"),
    ("POST", "/v1/revocations"): row("facility_staff"),
    ("POST", "/v1/requests"): row(*REQUESTERS),
    ("GET", "/v1/requests"): row(*READERS),
    ("POST", "/v1/requests/validate"): row(*REQUESTERS),
    ("GET", "/v1/requests/<request_id>"): row(*READERS),
    ("PATCH", "/v1/requests/<request_id>"): row(*REQUESTERS),
    ("POST", "/v1/requests/<request_id>/cancel"): row(*REQUESTERS),
    ("POST", "/v1/requests/<request_id>/submit"): row(*REQUESTERS),
    ("GET", "/v1/requests/<request_id>/events"): row(*READERS),
    ("POST", "/v1/requests/<request_id>/documents"): row(*READERS),
    ("GET", "/v1/requests/<request_id>/documents/<document_id>"): row(*READERS),
    ("GET", "/v1/requests/<request_id>/documents/<document_id>/content"): row(*READERS),
    ("DELETE", "/v1/requests/<request_id>/documents/<document_id>"): row("facility_staff"),
    ("GET", "/v1/facilities/<code>/queue"): row("facility_staff"),
    ("POST", "/v1/facilities/<code>/queue/search"): row("facility_staff"),
    ("GET", "/v1/facilities/<code>/dashboard"): row("facility_staff"),
    ("POST", "/v1/requests/<request_id>/claim"): row("facility_staff"),
    ("POST", "/v1/requests/<request_id>/transitions"): row("facility_staff"),
    ("POST", "/v1/requests/<request_id>/assign"): row("facility_staff"),
    # Invoices and payment (issue 14).
    ("POST", "/v1/requests/<request_id>/invoice"): row("facility_staff"),
    ("GET", "/v1/requests/<request_id>/invoice"): row(*READERS),
    ("GET", "/v1/requests/<request_id>/invoice.pdf"): row(*READERS),
    ("POST", "/v1/requests/<request_id>/invoice/dispute"): row(*REQUESTERS),
    ("POST", "/v1/requests/<request_id>/payments"): row("facility_staff"),
    # The accounting of disclosures: compliance for every facility, records staff for their own.
    ("POST", "/v1/disclosures/search"): row("facility_staff", auditor=200),
    ("POST", "/v1/requests/<request_id>/messages"): row(*READERS),
    ("GET", "/v1/requests/<request_id>/messages"): row(*READERS),
    ("POST", "/v1/requests/<request_id>/due-date/extend"): row("facility_staff"),
    # Every person's own second factor (an API key has none); the empty bodies sent here are 422.
    ("POST", "/v1/me/mfa/totp"): row(*PEOPLE, operator=200, auditor=200),
    ("POST", "/v1/me/mfa/totp/confirm"): row(*PEOPLE, operator=422, auditor=422),
    ("DELETE", "/v1/me/mfa/totp"): row(*PEOPLE, operator=422, auditor=422),
    # Several facilities in one request (issue 16): a group is its requester organization's alone.
    ("GET", "/v1/request-groups/<group_id>"): row(*REQUESTERS),
    ("POST", "/v1/request-groups/<group_id>/documents"): row(*REQUESTERS),
    ("POST", "/v1/requests/search"): row(*READERS),
    # Every person's own e-mail preference (an API key has none).
    # Bulk submission (issue 16).
    ("POST", "/v1/batches"): row(*REQUESTERS),
    ("GET", "/v1/batches/<batch_id>"): row(*REQUESTERS),
    ("PATCH", "/v1/me"): row("requester", "requester_admin", "facility_staff", "auditor", "gateway_admin",
                             operator=200, auditor=200),
    # Accounts (issue 15): an organization's admins manage its users; operators manage records staff, auditors,
    # operators and organizations' admins, never a firm's requesters (the real user here is one: 403).
    ("POST", "/v1/users/<user_id>/deactivate"): row("requester_admin", operator=403),
    ("POST", "/v1/users/<user_id>/reactivate"): row("requester_admin", operator=403),
    ("PATCH", "/v1/users/<user_id>"): row("requester_admin", operator=403),
    # Every person's own password and portal sessions (an API key has neither); the empty body is refused.
    ("POST", "/v1/me/password"): row(*PEOPLE, operator=422, auditor=422),
    ("GET", "/v1/me/sessions"): row(*PEOPLE, operator=200, auditor=200),
    ("DELETE", "/v1/me/sessions/<session_id>"): row(*PEOPLE, operator=404, auditor=404),
}

# Portal pages (session cookie), for the two roles with no page of their own.  Signing out is checked last.
SESSION_PAGES = {("GET", "portal.home"): 200, ("GET", "portal.session_status"): 200,
                 ("POST", "portal.keepalive"): 200, ("POST", "portal.sign_out"): 303,
                 ("GET", "portal.account"): 200, ("POST", "portal.update_notifications"): 303,
                 # Your own password (an empty form is refused) and sessions (an unknown one is a 404).
                 ("GET", "portal.security"): 200, ("POST", "portal.change_password"): 422,
                 ("POST", "portal.end_session"): 404,
                 # Two-step sign-in: set-up starts (200); confirming or turning off without a code is 422.
                 ("GET", "portal.mfa_settings"): 200, ("POST", "portal.mfa_setup"): 200,
                 ("POST", "portal.mfa_confirm"): 422, ("POST", "portal.mfa_disable"): 422}
PORTAL_REFUSED = {
    "portal.api_keys", "portal.create_api_key", "portal.revoke_api_key", "portal.webhooks", "portal.create_webhook",
    "portal.delete_webhook", "portal.queue", "portal.request_list", "portal.request_detail", "portal.new_request",
    "portal.create_request", "portal.validate_form", "portal.edit_request", "portal.update_request",
    "portal.upload_document", "portal.submit_request", "portal.cancel_request", "portal.download_document",
    "portal.view_document", "portal.claim_request", "portal.transition_request", "portal.withdraw_document",
    "portal.issue_invoice", "portal.record_payment", "portal.dispute_invoice", "portal.invoice_pdf",
    "portal.post_message",
    "portal.assign_request", "portal.queue_search", "portal.queue_action", "portal.dashboard",
    "portal.users", "portal.create_user", "portal.deactivate_user", "portal.reactivate_user",
    "portal.change_user_role",
    "portal.imports", "portal.import_template", "portal.import_csv", "portal.import_detail", "portal.import_submit",
    "portal.request_group", "portal.upload_group_document", "portal.submit_group", "portal.request_search",
    "portal.request_export",
}
# The auditor's own pages (the accounting of disclosures), refused to operators; auditors land there.
AUDITOR_PAGES = {("GET", "portal.disclosures_page"): 200, ("POST", "portal.disclosures_search"): 422,
                 ("GET", "portal.home"): 303}


def api_routes(app) -> set[tuple[str, str]]:
    """Every (method, rule) of the API that needs a credential."""
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.rule in auth_web.PUBLIC_RULES:
            continue
        if rule.rule.startswith(auth_web.SESSION_AUTHENTICATED_PREFIX + "/"):
            continue
        if rule.rule.startswith(auth_web.FHIR_PREFIX + "/"):  # its own guard: FHIR_RIGHTS below
            continue
        # A converter (`<request_id:request_id>`) says how the id is parsed, not who may call the route.
        plain = re.sub(r"<(?:[a-z_]+:)?([a-z_]+)>", r"<\1>", rule.rule)
        routes |= {(method, plain) for method in rule.methods - {"HEAD", "OPTIONS"}}
    return routes


def portal_routes(app) -> dict[tuple[str, str], str]:
    """Every (method, endpoint) of the portal behind its session guard, with a rule to call it by."""
    routes = {}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/portal") and rule.endpoint not in PUBLIC_ENDPOINTS:
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                routes[(method, rule.endpoint)] = rule.rule
    return routes


def test_every_api_route_is_in_the_rights_table(app):
    """A route added later without deciding who may call it fails here."""
    assert api_routes(app) == set(API_RIGHTS)


# /fhir/r4 (issue 17) has its own guard: its public documents, and routes only a SMART access token opens.
FHIR_PUBLIC, FHIR_TOKEN = "public", "smart-token"
FHIR_RIGHTS = {
    ("GET", "/fhir/r4/metadata"): FHIR_PUBLIC,
    ("GET", "/fhir/r4/.well-known/smart-configuration"): FHIR_PUBLIC,
    ("POST", "/fhir/r4/Task"): FHIR_TOKEN,
    ("GET", "/fhir/r4/Task"): FHIR_TOKEN,
    ("GET", "/fhir/r4/Task/<task_id>"): FHIR_TOKEN,
    ("PATCH", "/fhir/r4/Task/<task_id>"): FHIR_TOKEN,
    ("GET", "/fhir/r4/Consent/<consent_id>"): FHIR_TOKEN,
    ("GET", "/fhir/r4/AuditEvent/<event_id>"): FHIR_TOKEN,
}


def fhir_routes(app) -> set[tuple[str, str]]:
    return {(method, rule.rule) for rule in app.url_map.iter_rules()
            if rule.rule.startswith(auth_web.FHIR_PREFIX + "/") for method in rule.methods - {"HEAD", "OPTIONS"}}


def test_every_fhir_route_is_classified(app):
    assert fhir_routes(app) == set(FHIR_RIGHTS)


def test_no_credential_of_the_api_opens_fhir(client, world):
    """An API key or a person's token is no SMART access token: 401 (an OperationOutcome) for every role."""
    for role, headers in world["headers"].items():
        for (method, rule), kind in sorted(FHIR_RIGHTS.items()):
            ids = {"task_id": world["real"]["request_id"], "consent_id": world["real"]["request_id"],
                   "event_id": world["real"]["request_id"]}
            response = client.open(path_for(rule, ids), method=method,
                                   headers=headers, json={})
            expected = 200 if kind == FHIR_PUBLIC else 401
            assert response.status_code == expected, f"{role} {method} {rule}: {response.status_code}"
            assert response.mimetype in ("application/fhir+json", "application/json")


def test_every_portal_page_is_classified(app):
    classified = set(SESSION_PAGES) | set(AUDITOR_PAGES) | {(m, e) for (m, e) in portal_routes(app)
                                                             if e in PORTAL_REFUSED}
    assert set(portal_routes(app)) == classified


@pytest.fixture(scope="module")
def world(app, db, settings):
    """A firm with a submitted request (and its document), a webhook, and a user of every role."""
    client = app.test_client()
    firm = make_tenant(db)
    request_id = submitted(client, firm)
    admin = sign_in(client, firm.admin_email)
    resource = client.get(f"/v1/requests/{request_id}", headers=bearer(firm.api_key)).get_json()
    document_id = resource["documents"][0]["id"]
    webhook = client.post("/v1/webhooks", headers=admin, json={"url": "https://93.184.216.34/hooks",
                                                               "events": ["request.status_changed"]})
    assert webhook.status_code == 201, webhook.get_json()
    emails = {"requester": firm.requester_email, "requester_admin": firm.admin_email,
              "facility_staff": make_user(db, ["facility_staff"], ["tufts-mc"]),
              "auditor": make_user(db, ["auditor"]), "gateway_admin": make_user(db, ["gateway_admin"])}
    headers = {role: sign_in(client, email) for role, email in emails.items()}
    headers["api_key"] = bearer(firm.api_key)
    real = {"org_id": firm.org_id, "key_id": firm.api_key_id, "webhook_id": webhook.get_json()["id"],
            "request_id": request_id, "document_id": document_id, "code": "tufts-mc", "action": "claim",
            "user_id": firm.requester_id, "session_id": str(uuid.uuid4()), "batch_id": str(uuid.uuid4()),
            "group_id": str(uuid.uuid4())}
    return {"firm": firm, "headers": headers, "emails": emails, "real": real}


def path_for(rule: str, ids: dict) -> str:
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: ids[m.group(1)], rule)


# A body that would be accepted, so a refusal can only come from the role.
BODIES = {
    ("POST", "/v1/orgs/<org_id>/api-keys"): {"name": "x", "scopes": ["requests:read"]},
    ("POST", "/v1/orgs/<org_id>/users"): {"email": "second-admin@example.test", "password": PASSWORD,
                                          "role": "requester_admin"},
    ("POST", "/v1/webhooks"): {"url": "https://93.184.216.34/other", "events": ["request.status_changed"]},
    ("POST", "/v1/revocations"): {"patient": {"first_name": "Ana", "last_name": "Silva",
                                              "date_of_birth": "1980-02-29"},
                                 "recipient": "Smith & Jones LLP", "effective_on": "2026-01-01"},
    ("POST", "/v1/requests/<request_id>/transitions"): {"to": "in_progress"},
    ("POST", "/v1/requests/<request_id>/invoice"): {"pages": 10},
    ("POST", "/v1/requests/<request_id>/invoice/dispute"): {"note": "Too many pages"},
    ("POST", "/v1/requests/<request_id>/payments"): {"method": "check", "reference": "CHK-1", "amount": "28.69"},
    ("POST", "/v1/facilities/<code>/queue/search"): {"text": "Silva"},
    ("POST", "/v1/requests/search"): {"text": "Silva"},
    ("POST", "/v1/disclosures/search"): {"patient": {"first_name": "Ana", "last_name": "Silva",
                                                     "date_of_birth": "1980-02-29"}},
}


@pytest.mark.parametrize("role", ["gateway_admin", "auditor"])
def test_operators_and_auditors_get_exactly_the_table(client, db, world, role):
    """Real ids of a real organization: the refusals do not hang on an object being missing."""
    headers, real = world["headers"][role], world["real"]
    before = _denials(db)
    refused = 0
    for (method, rule), line in sorted(API_RIGHTS.items()):
        response = client.open(path_for(rule, real), method=method, headers=headers,
                               json=BODIES.get((method, rule), {}))
        assert response.status_code == line[role], f"{role} {method} {rule}: {response.status_code}"
        if line[role] == 403:
            assert response.get_json()["code"] == "FORBIDDEN"
            refused += 1
    assert _denials(db) - before == refused  # every refusal is in the audit trail
    # Nothing was changed on the way: the firm's key, webhook and request are as they were.
    admin = world["headers"]["requester_admin"]
    assert client.get(f"/v1/webhooks/{real['webhook_id']}", headers=admin).status_code == 200
    assert client.get(f"/v1/requests/{real['request_id']}", headers=world["headers"]["api_key"]).status_code == 200
    with db.transaction() as session:
        assert session.get(ApiKey, real["key_id"]).revoked_at is None
        assert session.scalars(select(User).where(User.email == "second-admin@example.test")).all() == []


@pytest.mark.parametrize("role", ["requester", "api_key", "requester_admin", "facility_staff"])
def test_other_roles_pass_or_meet_the_role_check_as_the_table_says(client, world, role):
    """Missing ids (except the caller's own organization and facility), so nothing is changed."""
    headers = world["headers"][role]
    ids = {name: str(uuid.uuid4()) for name in ("key_id", "webhook_id", "request_id", "document_id", "user_id",
                                                "session_id", "batch_id", "group_id")}
    ids |= {"org_id": world["real"]["org_id"], "code": "tufts-mc"}
    for (method, rule), line in sorted(API_RIGHTS.items()):
        response = client.open(path_for(rule, ids), method=method, headers=headers, json={})
        if line[role] == IN:
            assert response.status_code not in (401, 403), f"{role} {method} {rule}: {response.status_code}"
        else:
            assert response.status_code == line[role], f"{role} {method} {rule}: {response.status_code}"


def _denials(db) -> int:
    from sqlalchemy import func

    with db.transaction() as session:
        return session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "access.denied"))


@pytest.mark.parametrize("role", ["gateway_admin", "auditor"])
def test_portal_pages_refuse_operators_and_auditors(app, world, role):
    browser = portal_client(app)
    csrf = portal_sign_in(browser, world["emails"][role])
    for (method, endpoint), rule in sorted(portal_routes(app).items()):
        if (method, endpoint) == ("POST", "portal.sign_out"):
            continue
        path = path_for(rule, world["real"])
        response = browser.open(path, method=method, headers={"X-CSRF-Token": csrf})
        expected = SESSION_PAGES.get((method, endpoint), 403)
        if role == "auditor":
            expected = AUDITOR_PAGES.get((method, endpoint), expected)
        assert response.status_code == expected, f"{role} {method} {rule}: {response.status_code}"
    assert browser.post("/portal/sign-out", headers={"X-CSRF-Token": csrf}).status_code == 303


# --- the operator's one right inside a requester organization: its first admin ---------------------------------

def test_operator_adds_an_organizations_first_admin_and_no_one_else(client, db, world):
    operator = world["headers"]["gateway_admin"]
    with db.transaction() as session:
        org_id = create_organization(session, name=unique("New firm"), kind="law_firm").id

    def add(role: str):
        return client.post(f"/v1/orgs/{org_id}/users", headers=operator,
                           json={"email": f"{unique(role)}@example.test", "password": PASSWORD, "role": role})

    assert add("requester").status_code == 403  # the organization's admin adds requesters
    first = add("requester_admin")
    assert first.status_code == 201 and first.get_json()["roles"] == ["requester_admin"]
    second = add("requester_admin")
    assert second.status_code == 403 and second.get_json()["code"] == "FORBIDDEN"
    assert client.get(f"/v1/orgs/{org_id}/users", headers=operator).status_code == 200
    # The first admin takes it from there: users, keys, webhooks.
    admin = sign_in(client, first.get_json()["email"])
    assert client.post(f"/v1/orgs/{org_id}/users", headers=admin,
                       json={"email": f"{unique('r')}@example.test", "password": PASSWORD}).status_code == 201
    assert client.post(f"/v1/orgs/{org_id}/api-keys", headers=admin,
                       json={"scopes": ["requests:read"]}).status_code == 201
    with db.transaction() as session:
        refused = session.scalars(select(AuditEvent).where(
            AuditEvent.request_id == second.headers["X-Request-ID"])).one()
    assert (refused.action, refused.result) == ("access.denied", "denied")


def test_an_admin_of_another_organization_is_refused_as_before(client, db, world):
    other = make_tenant(db, "insurer")
    intruder = sign_in(client, other.admin_email)
    org_id = world["real"]["org_id"]
    assert client.post(f"/v1/orgs/{org_id}/users", headers=intruder,
                       json={"email": f"{unique('x')}@example.test", "password": PASSWORD}).status_code == 404
    assert client.post(f"/v1/orgs/{org_id}/api-keys", headers=intruder,
                       json={"scopes": ["requests:read"]}).status_code == 404


def test_the_gateway_command_keeps_its_powers(db, settings):
    """API.md v1.1: the limits on operators apply to gateway_admin credentials over HTTP, not to the CLI."""
    import json
    import os
    import subprocess
    import sys

    from tests.fixtures.live import settings_environment

    env = {**os.environ, **settings_environment(settings)}

    def gateway(*argv: str) -> dict:
        result = subprocess.run([os.path.join(os.path.dirname(sys.executable), "gateway"), *argv, "--json"],
                                env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    firm = make_tenant(db)  # it has an admin already
    key_id = gateway("api-keys", "create", "--org", firm.org_id, "--scopes", "requests:read")["id"]
    gateway("api-keys", "revoke", key_id)
    gateway("users", "create", "--org", firm.org_id, "--email", f"{unique('cli')}@example.test",
            "--password", PASSWORD, "--role", "requester_admin")

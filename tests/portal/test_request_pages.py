"""Requester pages through Flask's test client on both databases: sign-in, the form, the request page,
uploads, submit, tenancy, CSRF, headers and the session's limits."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from gateway.audit.models import AuditEvent
from gateway.db import utcnow
from gateway.portal.models import PortalSession
from tests import samples
from tests.factories import FACILITY_NAMES, facility_today, make_tenant, request_body, unique
from tests.portal.helpers import csrf_of, portal_client, portal_sign_in

# Judged against the facilities' calendar: .ci/run repeats these with the machine in far time zones.
# One database (tests/conftest.py): page rendering over service functions the API tests run on both databases.
pytestmark = [pytest.mark.date_sensitive, pytest.mark.one_database]

XHR = {"X-Requested-With": "portal"}


@pytest.fixture(scope="module")
def firm(db):
    return make_tenant(db)


def form_for(facility: str = "tufts-mc", **changes) -> dict:
    """The request form as a browser posts it, from the factories' passing body."""
    body = request_body(facility)
    flat = {"facility": facility, "reference": body["reference"], "purpose": "litigation", "pathway": "authorization",
            "patient.first_name": "Ana", "patient.last_name": "Silva", "patient.date_of_birth": "1980-02-29",
            "records.types": ["visit_notes", "lab_results"], "records.date_from": "2025-01-01",
            "records.date_to": body["records"]["date_to"], "records.format": "electronic",
            "delivery.method": "secure_download", "delivery.recipient.name": "Smith & Jones LLP",
            "delivery.recipient.address": "1 Main St, Boston", "authorization.signed_by": "patient",
            "authorization.signer_name": "Ana Silva", "authorization.signed_on": body["authorization"]["signed_on"],
            "authorization.expires_on": body["authorization"]["expires_on"],
            "authorization.discloser": FACILITY_NAMES[facility], "authorization.recipient": "Smith & Jones LLP",
            "authorization.information_description": "All visit notes and lab results 2025-2026",
            "authorization.purpose_statement": "Litigation", "authorization.statements.right_to_revoke": "on",
            "authorization.statements.no_conditioning": "on", "authorization.statements.redisclosure": "on"}
    if facility == "community-practices":
        flat.update({"practice.name": "Riverside Family Practice", "practice.address": "10 River Rd, Lowell"})
    flat.update(changes)
    return flat


def create(browser, **changes) -> str:
    response = browser.post("/portal/requests/new", data={**form_for(**changes), "csrf_token": browser.csrf})
    assert response.status_code == 303, response.get_data(as_text=True)[:2000]
    return re.search(r"/portal/requests/([0-9a-f-]{36})", response.headers["Location"]).group(1)


def upload(browser, request_id: str, data: bytes, kind: str = "authorization", name: str = "auth.pdf"):
    import io

    return browser.post(f"/portal/requests/{request_id}/documents", content_type="multipart/form-data",
                        headers={**XHR, "X-CSRF-Token": browser.csrf},
                        data={"kind": kind, "file": (io.BytesIO(data), name)})


def test_pages_need_a_session(app):
    client = portal_client(app)
    response = client.get("/portal/requests")
    assert response.status_code == 303 and "/portal/sign-in" in response.headers["Location"]
    assert client.get("/portal/requests", headers=XHR).status_code == 401


def test_every_portal_route_is_closed_without_a_session(app):
    """A portal page added later without thinking about sessions fails here."""
    from gateway.portal.web import PUBLIC_ENDPOINTS

    client, checked = portal_client(app), 0
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/portal") or rule.endpoint in PUBLIC_ENDPOINTS:
            continue
        path = re.sub(r"<(?:[^:>]+:)?[^>]+>", lambda _: str(uuid.uuid4()), rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(path, method=method)
            assert response.status_code == 303, f"{method} {rule.rule} answered {response.status_code}"
            assert "/portal/sign-in" in response.headers["Location"]
            checked += 1
    assert checked >= 15


def test_sign_in_failure_and_cookie_flags(app, firm):
    client = portal_client(app)
    page = client.get("/portal/sign-in")
    wrong = client.post("/portal/sign-in", data={"email": firm.requester_email, "password": "nope",
                                                 "csrf_token": csrf_of(page.get_data(as_text=True))})
    assert wrong.status_code == 401 and "do not match" in wrong.get_data(as_text=True)
    page = client.get("/portal/sign-in")
    right = client.post("/portal/sign-in", data={"email": firm.requester_email, "password": "correct horse battery "
                                                 "staple", "csrf_token": csrf_of(page.get_data(as_text=True))})
    cookie = next(v for k, v in right.headers if k == "Set-Cookie" and v.startswith("__Host-rgw_session="))
    for flag in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/"):
        assert flag in cookie
    assert "Domain" not in cookie


def test_sign_in_form_needs_its_csrf_token(app, firm):
    client = portal_client(app)
    client.get("/portal/sign-in")
    response = client.post("/portal/sign-in", data={"email": firm.requester_email, "password": "x"})
    assert response.status_code == 403 and "text/html" in response.content_type


def test_security_headers_on_pages(browser):
    response = browser.get("/portal/requests")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "<script>" not in response.get_data(as_text=True)  # nothing inline: the CSP would block it


def test_create_with_missing_fields_shows_error_summary_linked_to_fields(browser):
    response = browser.post("/portal/requests/new", data={**form_for(**{"patient.first_name": "",
                                                                          "patient.date_of_birth": "1980-02-30"}),
                                                           "csrf_token": browser.csrf})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'href="#f-patient-first_name"' in html and 'href="#f-patient-date_of_birth"' in html
    assert 'id="f-patient-first_name"' in html and 'aria-invalid="true"' in html
    assert "Smith &amp; Jones LLP" in html  # what was typed is kept


def test_expired_authorization_is_explained_then_fixed_and_submitted(browser, firm, db):
    today = facility_today()
    request_id = create(browser, **{"authorization.signed_on": str(today - timedelta(days=100)),
                                    "authorization.expires_on": str(today - timedelta(days=2))})
    page = browser.get(f"/portal/requests/{request_id}").get_data(as_text=True)
    assert 'data-code="AUTH_EXPIRED"' in page and "has expired" in page
    assert upload(browser, request_id, samples.minimal_pdf()).status_code == 201
    refused = browser.post(f"/portal/requests/{request_id}/submit", data={"csrf_token": browser.csrf})
    assert refused.status_code == 422 and "was not submitted" in refused.get_data(as_text=True)
    edit = browser.get(f"/portal/requests/{request_id}/edit").get_data(as_text=True)
    assert re.search(r'class="field-deficiency" data-code="AUTH_EXPIRED"', edit)
    fixed = browser.post(f"/portal/requests/{request_id}/edit", data={
        **form_for(**{"authorization.signed_on": str(today - timedelta(days=3)),
                      "authorization.expires_on": str(today + timedelta(days=200))}),
        "reference": re.search(r"<strong>([^<]+)</strong>", edit).group(1), "csrf_token": browser.csrf})
    assert fixed.status_code == 303
    assert 'id="ready"' in browser.get(f"/portal/requests/{request_id}").get_data(as_text=True)
    submitted = browser.post(f"/portal/requests/{request_id}/submit", data={"csrf_token": browser.csrf})
    assert submitted.status_code == 303
    assert 'data-status="submitted"' in browser.get(f"/portal/requests/{request_id}").get_data(as_text=True)
    with db.transaction() as session:
        reads = session.scalars(select(AuditEvent).where(AuditEvent.object_id == request_id,
                                                         AuditEvent.action == "request.read")).all()
    assert len(reads) >= 3  # every page view of the request


def test_live_validation_answers_field_errors_and_deficiencies(browser):
    data = {**form_for(**{"authorization.expires_on": str(facility_today() - timedelta(days=1))}),
            "csrf_token": browser.csrf}
    answer = browser.post("/portal/requests/validate", data=data, headers={**XHR, "X-CSRF-Token": browser.csrf})
    assert answer.status_code == 200
    codes = {d["code"] for d in answer.get_json()["deficiencies"]}
    assert "AUTH_EXPIRED" in codes


def test_malware_upload_is_refused_and_not_listed(browser):
    request_id = create(browser)
    answer = upload(browser, request_id, samples.eicar(), name="invoice.pdf")
    assert answer.status_code == 422 and answer.get_json()["code"] == "MALWARE_DETECTED"
    page = browser.get(f"/portal/requests/{request_id}").get_data(as_text=True)
    assert 'id="no-documents"' in page
    assert 'data-event="upload_blocked"' in page and "invoice.pdf" not in page  # on the timeline, nameless
    assert upload(browser, request_id, samples.minimal_pdf()).status_code == 201
    assert 'data-event="document_added"' in browser.get(f"/portal/requests/{request_id}").get_data(as_text=True)


def test_other_firms_request_is_the_404_page(app, db, browser):
    request_id = create(browser)
    other = portal_client(app)
    portal_sign_in(other, make_tenant(db).requester_email)
    response = other.get(f"/portal/requests/{request_id}")
    assert response.status_code == 404 and "Page not found" in response.get_data(as_text=True)
    assert "Ana" not in response.get_data(as_text=True)
    missing = other.get(f"/portal/requests/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert _strip_ids(missing.get_data(as_text=True)) == _strip_ids(response.get_data(as_text=True))


def _strip_ids(html: str) -> str:
    return re.sub(r"[0-9a-f]{32}|[0-9a-f-]{36}|value=\"[^\"]+\"|data-csrf=\"[^\"]+\"", "", html)


def test_post_without_csrf_token_is_refused(browser):
    request_id = create(browser)
    response = browser.post(f"/portal/requests/{request_id}/cancel", data={})
    assert response.status_code == 403 and "expired" in response.get_data(as_text=True)
    cross_site = browser.post(f"/portal/requests/{request_id}/cancel", data={"csrf_token": browser.csrf},
                              headers={"Origin": "https://evil.example"})
    assert cross_site.status_code == 403
    assert browser.post(f"/portal/requests/{request_id}/cancel", data={"csrf_token": browser.csrf}).status_code == 303


def _newest_session(session, user_id: str) -> PortalSession:
    """This user's newest portal session: other tests' sessions share the database, and some were made under
    a clock travelled ahead (tests/auth/test_mfa.py), so "the newest of all" may not be this test's."""
    return session.scalars(select(PortalSession).where(PortalSession.user_id == user_id)
                           .order_by(PortalSession.created_at.desc()).limit(1)).one()


def test_idle_session_is_ended_server_side(app, db, firm):
    client = portal_client(app)
    portal_sign_in(client, firm.requester_email)
    idle = app.extensions["gateway"].settings.portal_idle_timeout + 5
    with db.transaction() as session:
        newest = _newest_session(session, firm.requester_id)
        session.execute(update(PortalSession).where(PortalSession.id == newest.id).values(
            last_seen_at=utcnow() - timedelta(seconds=idle)))
    response = client.get("/portal/requests")
    assert response.status_code == 303 and "reason=idle" in response.headers["Location"]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "without activity" in page
    assert client.get("/portal/requests").status_code == 303  # the session stays ended


def test_sign_out_ends_the_session(app, firm):
    client = portal_client(app)
    csrf = portal_sign_in(client, firm.requester_email)
    assert client.post("/portal/sign-out", data={"csrf_token": csrf}).status_code == 303
    assert client.get("/portal/requests").status_code == 303


def test_request_list_filters(browser):
    reference = unique("LIST")
    create(browser, reference=reference, facility="lowell-general",
           **{"authorization.discloser": FACILITY_NAMES["lowell-general"]})
    listed = browser.get("/portal/requests?facility=lowell-general&status=draft").get_data(as_text=True)
    assert reference in listed
    assert reference not in browser.get("/portal/requests?facility=tufts-mc").get_data(as_text=True)
    assert browser.get("/portal/requests?status=bogus").status_code == 422


def test_asking_for_the_session_status_is_not_activity(app, db, firm):
    client = portal_client(app)
    portal_sign_in(client, firm.requester_email)
    with db.transaction() as session:
        newest = _newest_session(session, firm.requester_id)
        session.execute(update(PortalSession).where(PortalSession.id == newest.id).values(
            last_seen_at=utcnow() - timedelta(seconds=100)))
        session_id = newest.id
    answer = client.get("/portal/session/status", headers=XHR)
    timeout = app.extensions["gateway"].settings.portal_idle_timeout
    assert answer.status_code == 200 and timeout - 102 <= answer.get_json()["idle_remaining"] <= timeout - 99
    with db.transaction() as session:
        seen = session.get(PortalSession, session_id).last_seen_at
    assert (utcnow() - seen).total_seconds() >= 99  # not touched
    client.get("/portal/requests")
    with db.transaction() as session:
        assert (utcnow() - session.get(PortalSession, session_id).last_seen_at).total_seconds() < 5


def test_signed_out_page_ends_an_idle_session_and_keeps_a_live_one(app, db, firm):
    client = portal_client(app)
    portal_sign_in(client, firm.requester_email)
    live = client.get("/portal/signed-out?reason=idle")
    assert live.status_code == 303 and live.headers["Location"].endswith("/portal/")  # another tab is active
    with db.transaction() as session:
        newest = _newest_session(session, firm.requester_id)
        session.execute(update(PortalSession).where(PortalSession.id == newest.id).values(
            last_seen_at=utcnow() - timedelta(seconds=app.extensions["gateway"].settings.portal_idle_timeout + 1)))
        session_id = newest.id
    gone = client.get("/portal/signed-out?reason=idle")
    assert gone.status_code == 303 and "reason=idle" in gone.headers["Location"]
    with db.transaction() as session:
        row = session.get(PortalSession, session_id)
        assert row.ended_at is not None and row.end_reason == "idle"


def test_new_request_form_sent_twice_creates_one_draft(browser, firm, db):
    from sqlalchemy import func

    from gateway.intake.models import RecordsRequest

    page = browser.get("/portal/requests/new").get_data(as_text=True)
    form_id = re.search(r'name="form_id" value="([0-9a-f]{32})"', page).group(1)
    data = {**form_for(), "csrf_token": browser.csrf, "form_id": form_id}
    first = browser.post("/portal/requests/new", data=data)
    again = browser.post("/portal/requests/new", data=data)
    assert first.status_code == again.status_code == 303
    assert again.headers["Location"] == first.headers["Location"]  # to the one draft, not a 409 page
    with db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(RecordsRequest).where(
            RecordsRequest.reference == data["reference"])) == 1


def test_a_deactivated_user_is_signed_out_at_the_next_page(app, db):
    from gateway.auth.models import User

    tenant = make_tenant(db)
    client = portal_client(app)
    portal_sign_in(client, tenant.requester_email)
    with db.transaction() as session:
        session.get(User, tenant.requester_id).active = False
    response = client.get("/portal/requests")
    assert response.status_code == 303 and "reason=deactivated" in response.headers["Location"]
    with db.transaction() as session:
        row = session.scalars(select(PortalSession).where(PortalSession.user_id == tenant.requester_id)).one()
        assert row.end_reason == "deactivated"


def test_portal_sign_in_shares_the_per_address_limit_with_the_api(settings):
    import dataclasses

    from gateway.app import create_app

    app = create_app(dataclasses.replace(settings, sign_in_rate_limit="3 per minute"))
    client = portal_client(app)
    # An address of its own per run: the limit lives in the session's Redis for a minute, and the suite runs
    # this test once per database.
    client.environ_base["REMOTE_ADDR"] = f"2001:db8::{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}"
    statuses = []
    for attempt in range(4):
        page = client.get("/portal/sign-in")
        statuses.append(client.post("/portal/sign-in", data={
            "email": f"nobody-{attempt}@example.test", "password": "wrong password!!",
            "csrf_token": csrf_of(page.get_data(as_text=True))}).status_code)
    assert statuses == [401, 401, 401, 429]
    api = client.post("/v1/auth/token", json={"email": "x@example.test", "password": "wrong password!!"})
    assert api.status_code == 429  # the same budget


def test_signing_in_again_replaces_the_browsers_session(app, db, firm):
    client = portal_client(app)
    portal_sign_in(client, firm.requester_email)
    first = client.get_cookie("__Host-rgw_session").value
    portal_sign_in(client, firm.admin_email)
    second = client.get_cookie("__Host-rgw_session").value
    assert first != second
    stale = portal_client(app)
    stale.set_cookie("__Host-rgw_session", first, secure=True)
    assert stale.get("/portal/requests").status_code == 303  # the first token no longer works
    fresh = portal_client(app)
    fresh.set_cookie("__Host-rgw_session", second, secure=True)
    assert fresh.get("/portal/requests").status_code == 200  # (the way the cookie is handed over works)


def test_a_long_timeline_is_shown_whole(browser, db, monkeypatch):
    from gateway.intake.lifecycle import add_event
    from gateway.intake.models import RecordsRequest
    from gateway.portal import detail

    monkeypatch.setattr(detail, "TIMELINE_PAGE", 3)  # several pages without writing hundreds of rows
    request_id = create(browser)
    with db.transaction() as session:
        req = session.get(RecordsRequest, request_id)
        for _ in range(7):
            add_event(session, req, "updated", "user:test", fields=["instructions"])
    page = browser.get(f"/portal/requests/{request_id}").get_data(as_text=True)
    assert page.count('data-event="updated"') == 7 and page.count('data-event="created"') == 1

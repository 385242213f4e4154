"""Issue 15's staff tools through Flask's test client, on both databases: the staff request page (everything a
clerk needs, the authorization beside the checks, assign and unclaim), the queue's filters, sort, search and
row actions (search terms never in a URL or a log), and the dashboard's figures with the clock frozen."""

from __future__ import annotations

import html as html_lib
import io
import logging
import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select, update

from gateway.adapters import build_redis
from gateway.audit.models import AuditEvent
from gateway.auth.models import Organization, User
from gateway.intake.models import RecordsRequest
from gateway.routing import relay
from gateway.routing.dispatch import RqDispatcher
from tests import samples
from tests.factories import (
    FACILITY_TIMEZONE,
    bearer,
    facility_today,
    make_tenant,
    make_user,
    request_body,
    sign_in,
    unique,
)
from tests.portal.helpers import portal_client, portal_sign_in

# Judged against the facilities' calendar: .ci/run repeats these with the machine in far time zones.
# One database (tests/conftest.py): page rendering over service functions the API tests run on both databases.
pytestmark = [pytest.mark.date_sensitive, pytest.mark.one_database]

BOSTON = ZoneInfo(FACILITY_TIMEZONE)
_ROW = re.compile(r'<tr data-request="([0-9a-f-]{36})"( class="overdue")?>(.*?)</tr>', re.S)
_LINK_PAGER = re.compile(r'<p class="pager"><a href="([^"]+)"')
_URLS = re.compile(r'(?:href|action|src)="([^"]*)"')


@pytest.fixture(scope="module")
def firm(db):
    return make_tenant(db)


def signed_in(app, email: str):
    client = portal_client(app)
    client.csrf = portal_sign_in(client, email)
    return client


def clerk(db, facility: str = "tufts-mc") -> tuple[str, str]:
    """A records clerk of `facility`: (email, user id)."""
    email = make_user(db, ["facility_staff"], [facility])
    with db.transaction() as session:
        return email, session.scalars(select(User.id).where(User.email == email)).one()


def publish(db, settings) -> None:
    dispatcher = RqDispatcher(build_redis(settings))
    while relay.publish_due(db, dispatcher, batch=100).done:
        pass


def draft(client, tenant, facility: str = "tufts-mc", documents=("authorization",), **changes) -> str:
    """A draft through the API with its documents attached (every document a clean PDF)."""
    headers = bearer(tenant.api_key)
    created = client.post("/v1/requests", json=request_body(facility, **changes), headers=headers)
    assert created.status_code == 201, created.get_json()
    request_id = created.get_json()["id"]
    for kind in documents:
        uploaded = client.post(f"/v1/requests/{request_id}/documents", headers=headers,
                               content_type="multipart/form-data",
                               data={"kind": kind, "file": (io.BytesIO(samples.minimal_pdf()), f"{kind}.pdf")})
        assert uploaded.status_code == 201, uploaded.get_json()
    return request_id


def submit(client, db, settings, tenant, request_id: str) -> str:
    """Submit and let the relay route it."""
    response = client.post(f"/v1/requests/{request_id}/submit", headers=bearer(tenant.api_key))
    assert response.status_code == 202, response.get_json()
    publish(db, settings)
    return request_id


def routed(client, db, settings, tenant, facility: str = "tufts-mc", documents=("authorization",),
           **changes) -> str:
    return submit(client, db, settings, tenant, draft(client, tenant, facility, documents, **changes))


def post(client, path: str, data=None):
    return client.post(path, data={**(data or {}), "csrf_token": client.csrf})


def text_of(html: str, element_id: str) -> str:
    """The text of the element with this id (tags dropped, entities decoded, spaces collapsed)."""
    match = re.search(rf'<(\w+)[^>]* id="{element_id}"[^>]*>(.*?)</\1>', html, re.S)
    assert match, f"no #{element_id}"
    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", match.group(2))).split())


def request_row(db, request_id: str) -> RecordsRequest:
    with db.transaction() as session:
        req = session.get(RecordsRequest, request_id)
        session.expunge(req)
        return req


def audit_actions(db, action: str, object_id: str) -> list[AuditEvent]:
    with db.transaction() as session:
        return session.scalars(select(AuditEvent).where(AuditEvent.action == action,
                                                        AuditEvent.object_id == object_id)).all()


# ---- the staff request page ----------------------------------------------------------------------------------

FULL = {
    "patient__other_names": ["Ana Costa", "Ana Maria Silva"], "patient__mrn": "MRN-004417",
    "records__types": ["visit_notes", "lab_results", "radiology_reports"], "records__format": "paper",
    "records__sensitive": ["hiv", "mental_health"], "authorization__specific_consents": ["hiv"],
    "authorization__signed_by": "representative", "authorization__signer_name": "Maria Silva",
    "authorization__representative": {"authority": "health_care_proxy",
                                      "description": "Health care proxy signed in 2019"},
    "authorization__expiration_event": "The end of the litigation",
    "delivery__method": "mail",
    "delivery__recipient": {"name": "Smith & Jones LLP", "address": "1 Main St, Suite 400\nBoston, MA 02110"},
    "instructions": "Please include the 2025 imaging reports.",
}


def test_the_staff_page_shows_everything_a_clerk_needs_beside_the_authorization(app, client, db, settings, firm):
    today = facility_today()
    returns_on = today + timedelta(days=21)
    request_id = routed(client, db, settings, firm, "community-practices",
                        documents=("authorization", "representative_authority"),
                        legal_process={"return_date": str(returns_on)}, **FULL)
    email, _ = clerk(db, "community-practices")
    staff = signed_in(app, email)
    response = staff.get(f"/portal/requests/{request_id}")
    page = response.get_data(as_text=True)
    assert response.status_code == 200, page[:2000]
    req = request_row(db, request_id)
    with db.transaction() as session:
        org_name = session.get(Organization, firm.org_id).name

    assert text_of(page, "case-org") == f"{org_name} (Law firm)"
    assert text_of(page, "case-practice") == "Riverside Family Practice 10 River Rd, Lowell"
    assert text_of(page, "case-pathway") == "A signed HIPAA authorization"
    assert text_of(page, "case-return-date") == returns_on.strftime("%b %-d, %Y")
    assert text_of(page, "case-due").startswith(req.due_on.strftime("%b %-d, %Y"))
    assert text_of(page, "case-due-clock") == ("The facility's turnaround target Facility policy: target turnaround "
                                               "(10 calendar days)")
    assert text_of(page, "case-queue") == "Sensitive review"  # mental health records: sensitive review first
    assert text_of(page, "case-assignee") == "Nobody yet"

    assert text_of(page, "case-patient-name") == "Ana Silva"
    assert text_of(page, "case-other-names") == "Ana Costa; Ana Maria Silva"
    assert text_of(page, "case-dob") == "Feb 29, 1980"
    assert text_of(page, "case-mrn") == "MRN-004417"
    assert text_of(page, "case-deceased") == "No" and text_of(page, "case-minor") == "No"

    assert text_of(page, "case-types") == "Visit notes, Lab results, Radiology reports"
    assert text_of(page, "case-dates") == (f"Jan 1, 2025 – {(today - timedelta(days=30)).strftime('%b %-d, %Y')}")
    assert text_of(page, "case-format") == "Paper"
    assert text_of(page, "case-sensitive") == "HIV/AIDS, Mental health"
    assert text_of(page, "case-consents") == "HIV/AIDS information"

    assert text_of(page, "case-delivery-method") == "Mail"
    assert text_of(page, "case-recipient") == "Smith & Jones LLP"
    assert text_of(page, "case-address") == "1 Main St, Suite 400 Boston, MA 02110"
    assert text_of(page, "case-instructions") == "Please include the 2025 imaging reports."
    assert text_of(page, "case-fee").startswith(f"${req.fee_estimate['amount']}")
    assert text_of(page, "case-invoice") == "Not issued"

    assert text_of(page, "auth-signed-by") == "A personal representative"
    assert text_of(page, "auth-signer") == "Maria Silva"
    assert text_of(page, "auth-signed-on") == (today - timedelta(days=10)).strftime("%b %-d, %Y")
    assert text_of(page, "auth-expires") == (f"{(today + timedelta(days=170)).strftime('%b %-d, %Y')}; or on this "
                                            "event: The end of the litigation")
    assert text_of(page, "auth-discloser") == "Riverside Family Practice"
    assert text_of(page, "auth-recipient") == "Smith & Jones LLP"
    assert text_of(page, "auth-description") == "All visit notes and lab results 2025-2026"
    assert text_of(page, "auth-purpose") == "Litigation"
    for statement in ("auth-right-to-revoke", "auth-no-conditioning", "auth-redisclosure"):
        assert text_of(page, statement) == "Yes"
    assert text_of(page, "auth-authority") == "Health care proxy Health care proxy signed in 2019"
    assert "nothing in the way" in text_of(page, "checks-today")
    assert text_of(page, "required-documents") == ("Signed HIPAA authorization: received Proof of "
                                                   "representative's authority: received")

    # The signed authorization beside the checks: the sandboxed viewer, framed by this page only.
    with db.transaction() as session:
        auth_doc = next(d.id for d in session.get(RecordsRequest, request_id).documents if d.kind == "authorization")
    viewer = f"/portal/requests/{request_id}/documents/{auth_doc}/view"
    assert re.search(rf'<iframe class="document-viewer" id="authorization-viewer" src="{viewer}" '
                     r'title="Signed HIPAA authorization \(authorization.pdf\)"></iframe>', page)
    assert f'href="{viewer}" target="_blank" rel="noopener" id="open-authorization"' in page
    assert "frame-src 'self'" in response.headers["Content-Security-Policy"]
    framed = staff.get(viewer)
    assert framed.status_code == 200 and framed.headers["Content-Security-Policy"] == "frame-ancestors 'self'"

    # The lifecycle's actions are there; no PHI in the title; the page view is audited as a read.
    for control in ('id="claim-request"', 'id="assign-form"', 'id="transition-form"', 'id="documents"'):
        assert control in page
    assert "<title>Request · Records Request Gateway</title>" in page
    assert len(audit_actions(db, "request.read", request_id)) == 1
    # Another facility's clerk: the 404 page, nothing of it shown.
    other = signed_in(app, make_user(db, ["facility_staff"], ["tufts-mc"]))
    refused = other.get(f"/portal/requests/{request_id}")
    assert refused.status_code == 404 and "Silva" not in refused.get_data(as_text=True)
    assert other.get(viewer).status_code == 404


def test_the_due_date_names_the_legal_process_when_its_return_date_comes_first(app, client, db, settings, firm):
    returns_on = facility_today() + timedelta(days=2)
    request_id = routed(client, db, settings, firm, "lowell-general", ("subpoena", "satisfactory_assurances"),
                        pathway="subpoena", authorization=None, legal_process={"return_date": str(returns_on)})
    staff = signed_in(app, make_user(db, ["facility_staff"], ["lowell-general"]))
    page = staff.get(f"/portal/requests/{request_id}").get_data(as_text=True)
    assert text_of(page, "case-due").startswith(returns_on.strftime("%b %-d, %Y"))
    assert text_of(page, "case-due-clock") == "The legal process's return date Return date of the legal process"
    assert text_of(page, "no-authorization") == "No authorization: the request rests on a subpoena."
    assert 'title="Subpoena (subpoena.pdf)"' in page  # the subpoena is the document beside the checks


@pytest.mark.parametrize(("image", "name", "framed"), [(samples.png_bytes, "auth.png", True),
                                                     (samples.tiff_bytes, "auth.tif", False)])
def test_an_image_authorization_is_framed_sandboxed_and_a_tiff_offered_as_a_download(app, client, db, settings,
                                                                                     firm, image, name, framed):
    request_id = draft(client, firm, documents=())
    uploaded = client.post(f"/v1/requests/{request_id}/documents", headers=bearer(firm.api_key),
                           content_type="multipart/form-data",
                           data={"kind": "authorization", "file": (io.BytesIO(image()), name)})
    assert uploaded.status_code == 201, uploaded.get_json()
    document_id = uploaded.get_json()["id"]
    submit(client, db, settings, firm, request_id)
    staff = signed_in(app, make_user(db, ["facility_staff"], ["tufts-mc"]))
    response = staff.get(f"/portal/requests/{request_id}")
    page = response.get_data(as_text=True)
    viewer = f"/portal/requests/{request_id}/documents/{document_id}/view"
    if framed:  # an image is sandboxed twice: by the frame's attribute and by the viewer's own CSP
        assert re.search(rf'<iframe [^>]*src="{viewer}" [^>]*sandbox></iframe>', page)
        assert "frame-src 'self'" in response.headers["Content-Security-Policy"]
        assert staff.get(viewer).headers["Content-Security-Policy"].startswith("sandbox;")
    else:  # a browser would only download a TIFF: it is offered as one, and the page frames nothing
        assert "<iframe" not in page and 'id="download-authorization"' in page
        assert f"/portal/requests/{request_id}/documents/{document_id}/download" in page
        assert "frame-src" not in response.headers["Content-Security-Policy"]


def test_assign_and_unclaim_from_the_request_page(app, client, db, settings, firm):
    request_id = routed(client, db, settings, firm)
    me_email, _ = clerk(db)
    colleague_email, colleague_id = clerk(db)
    gone_email, gone_id = clerk(db)
    elsewhere_email, elsewhere_id = clerk(db, "lowell-general")
    with db.transaction() as session:
        session.get(User, gone_id).active = False
    me = signed_in(app, me_email)
    page = me.get(f"/portal/requests/{request_id}").get_data(as_text=True)
    options = re.search(r'<select id="f-user_id".*?</select>', page, re.S).group(0)
    assert colleague_email in options and me_email in options  # a clerk may take it for themself too
    assert gone_email not in options and elsewhere_email not in options

    forged = post(me, f"/portal/requests/{request_id}/assign", {"user_id": elsewhere_id})
    html = forged.get_data(as_text=True)
    assert forged.status_code == 422 and 'href="#f-user_id"' in html and "active records clerk" in html
    assert request_row(db, request_id).assigned_to is None
    assert post(me, f"/portal/requests/{request_id}/assign", {}).status_code == 422

    assigned = post(me, f"/portal/requests/{request_id}/assign", {"user_id": colleague_id})
    assert assigned.status_code == 303 and assigned.headers["Location"].endswith(f"{request_id}#staff-actions")
    req = request_row(db, request_id)
    assert (req.status, req.assigned_to) == ("in_progress", f"user:{colleague_id}")
    page = me.get(f"/portal/requests/{request_id}").get_data(as_text=True)
    assert f"Assigned to {colleague_email}." in page and text_of(page, "case-assignee") == colleague_email
    assert 'id="unclaim-request"' not in page  # only the clerk working it unclaims from here

    colleague = signed_in(app, colleague_email)
    page = colleague.get(f"/portal/requests/{request_id}").get_data(as_text=True)
    assert 'id="unclaim-request"' in page and text_of(page, "case-assignee") == "you"
    unclaimed = post(colleague, f"/portal/requests/{request_id}/transition", {"to": "routed"})
    assert unclaimed.status_code == 303
    req = request_row(db, request_id)
    assert (req.status, req.assigned_to) == ("routed", None)


# ---- the queue: filters, sort, search, row actions ----------------------------------------------------------

def queue_rows(client, query: str = "") -> list[tuple[str, bool, str]]:
    """Every row of the (GET) queue, following the pager: (request id, overdue, row html)."""
    rows, url = [], f"/portal/queue{query}"
    while url:
        response = client.get(html_lib.unescape(url))
        assert response.status_code == 200, response.get_data(as_text=True)[:1000]
        page = response.get_data(as_text=True)
        rows += [(m.group(1), bool(m.group(2)), m.group(3)) for m in _ROW.finditer(page)]
        pager = _LINK_PAGER.search(page)
        url = pager.group(1) if pager else None
    return rows


def hidden_fields(form_html: str) -> dict:
    return {name: html_lib.unescape(value) for name, value in
            re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form_html)}


def assert_no_url_carries(page: str, *secrets: str) -> None:
    for url in _URLS.findall(page):
        for secret in secrets:
            assert secret.casefold() not in html_lib.unescape(url).casefold(), url


def search(client, text: str, **filters):
    """The search form posted; then every page of results through its (POST) pager: (ids, responses)."""
    ids, responses, data = [], [], {"text": text, "facility": "tufts-mc", **filters}
    while True:
        response = post(client, "/portal/queue", data)
        responses.append(response)
        page = response.get_data(as_text=True)
        assert response.status_code == 200, page[:2000]
        ids += [m.group(1) for m in _ROW.finditer(page)]
        more = re.search(r'<form method="post" action="/portal/queue" class="pager" id="more-results">(.*?)</form>',
                         page, re.S)
        if not more:
            return ids, responses
        data = hidden_fields(more.group(1))
        assert len(responses) < 1000


def test_queue_filters_mine_unassigned_due_today_overdue_and_sort(app, client, db, settings, firm):
    staff = signed_in(app, clerk(db)[0])
    today = facility_today()
    due_today, late, later, mine = (routed(client, db, settings, firm) for _ in range(4))
    with db.transaction() as session:  # test setup: due dates around today, one assigned to me
        session.execute(update(RecordsRequest).where(RecordsRequest.id == due_today).values(due_on=today))
        session.execute(update(RecordsRequest).where(RecordsRequest.id == late)
                        .values(due_on=today - timedelta(days=3)))
        session.execute(update(RecordsRequest).where(RecordsRequest.id == later)
                        .values(due_on=today + timedelta(days=30)))
    assert post(staff, f"/portal/queue/requests/{mine}/claim", {"facility": "tufts-mc"}).status_code == 303

    def ids(query):
        return [row[0] for row in queue_rows(staff, query)]

    assert set(ids("?assigned=me")) == {mine}
    unassigned = queue_rows(staff, "?assigned=nobody")
    assert {due_today, late, later} <= {r[0] for r in unassigned} and mine not in {r[0] for r in unassigned}
    assert all("Nobody yet" in r[2] for r in unassigned)
    todays = queue_rows(staff, "?due=today")
    assert due_today in [r[0] for r in todays] and all("data-due-today" in r[2] for r in todays)
    overdue = queue_rows(staff, "?due=overdue")
    assert late in [r[0] for r in overdue] and all(r[1] for r in overdue)
    assert due_today not in [r[0] for r in overdue] and later not in [r[0] for r in overdue]
    assert set(ids("?assigned=me&status=routed")) == set()
    assert set(ids("?assigned=me&status=in_progress")) == {mine}
    # Sort: oldest due first by default; last updated first on request (the claim is the latest change).
    default = ids("")
    assert default.index(late) < default.index(due_today) < default.index(later)
    by_update = ids("?sort=-updated_at")  # the claim is the latest change of the four
    assert by_update.index(mine) < min(by_update.index(r) for r in (due_today, late, later))
    page = staff.get("/portal/queue?sort=-updated_at").get_data(as_text=True)
    assert '<th scope="col">Updated</th>' in page and '<option value="-updated_at" selected>' in page
    # The filter form posts; filters alone come back as a bookmarkable view (no search terms in it).
    applied = post(staff, "/portal/queue", {"facility": "tufts-mc", "assigned": "nobody", "due": "overdue",
                                            "sort": "-updated_at", "text": "  "})
    assert applied.status_code == 303
    assert applied.headers["Location"] == "/portal/queue?facility=tufts-mc&assigned=nobody&due=overdue&sort=-updated_at"
    for query in ("?assigned=everyone", "?due=tomorrow", "?sort=reference"):
        refused = staff.get(f"/portal/queue{query}")
        assert refused.status_code == 422 and 'data-error-status="422"' in refused.get_data(as_text=True)


def test_search_by_reference_or_patient_name_never_puts_the_terms_in_a_url_or_a_log(app, client, db, settings, firm,
                                                                                   caplog):
    surname = f"Núñez-{unique('x')[2:]}"  # accented, and unique to this test in the shared database
    plain = surname.replace("ú", "u").replace("ñ", "n").lower()
    mine = routed(client, db, settings, firm, patient__last_name=surname)
    former = routed(client, db, settings, firm, patient__other_names=[f"Beatriz {surname}"])
    reference = f"REF-{unique('Q')}"
    by_reference = routed(client, db, settings, firm, reference=reference)
    other = routed(client, db, settings, firm)
    staff = signed_in(app, make_user(db, ["facility_staff"], ["tufts-mc"]))

    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        found, responses = search(staff, plain.upper())
        by_first_and_last, _ = search(staff, f"{plain} ana")  # any order; words start the names
        by_ref, _ = search(staff, reference.lower()[4:])
        routed_only, _ = search(staff, plain, status="in_progress")
    assert set(found) == {mine, former} and other not in found
    assert by_first_and_last == [mine]
    assert by_ref == [by_reference]
    assert routed_only == []
    page = responses[0].get_data(as_text=True)
    assert "<title>Queue" in page and 'id="results-title"' in page and surname not in page  # no names listed
    assert_no_url_carries(page, plain, surname)
    logged = "\n".join(record.getMessage() + repr(record.__dict__) for record in caplog.records)
    assert plain not in logged.lower() and reference.lower() not in logged.lower()
    searches = audit_actions(db, "queue.search", "tufts-mc")
    assert searches and all(plain not in repr(vars(e)).lower() for e in searches)

    # The API answers the same search, the terms in its body.
    headers = sign_in(client, make_user(db, ["facility_staff"], ["tufts-mc"]))
    api = client.post("/v1/facilities/tufts-mc/queue/search", headers=headers,
                      json={"text": f"{surname[:3]}", "filters": {"status": "routed"}, "limit": 100})
    assert api.status_code == 200, api.get_json()
    assert {mine, former} <= {item["id"] for item in api.get_json()["items"]}
    short = post(staff, "/portal/queue", {"facility": "tufts-mc", "text": "n"})
    assert short.status_code == 422 and 'href="#f-text"' in short.get_data(as_text=True)
    assert client.post("/v1/facilities/tufts-mc/queue/search", headers=headers, json={"text": "n"}).status_code == 422


def test_search_results_page_across_pages_each_once_in_order(app, client, db, settings, firm, monkeypatch):
    """More matches than a page, and a scan bound smaller than the queue: every match once, in due order."""
    from gateway.portal import worklist
    from gateway.routing import queue as queues

    surname = f"Okafor-{unique('p')[2:]}"
    made = [routed(client, db, settings, firm, patient__last_name=surname) for _ in range(7)]
    today = facility_today()
    with db.transaction() as session:  # ties on the due date, and one without
        for index, request_id in enumerate(made):
            session.execute(update(RecordsRequest).where(RecordsRequest.id == request_id).values(
                due_on=None if index == 3 else today + timedelta(days=index % 2)))
        rows = session.execute(select(RecordsRequest.id, RecordsRequest.due_on)
                               .where(RecordsRequest.id.in_(made))).all()
    expected = [r.id for r in sorted(rows, key=lambda r: (r.due_on is None, r.due_on or date.min, r.id))]
    staff = signed_in(app, make_user(db, ["facility_staff"], ["tufts-mc"]))
    monkeypatch.setattr(worklist, "PAGE_SIZE", 3)
    found, responses = search(staff, surname)
    assert found == expected and len(responses) == 3
    monkeypatch.setattr(queues, "SEARCH_SCAN_LIMIT", 4)  # a call reads at most 4 queue rows
    monkeypatch.setattr(queues, "SEARCH_BATCH", 3)
    found, responses = search(staff, surname)
    assert found == expected and len(responses) > 3
    for response in responses:
        assert_no_url_carries(response.get_data(as_text=True), surname)
    by_update, _ = search(staff, surname, sort="-updated_at")
    assert sorted(by_update) == sorted(expected) and len(by_update) == len(expected)


def test_claim_unclaim_and_reassign_from_the_queue(app, client, db, settings, firm):
    me_email, _ = clerk(db)
    colleague_email, colleague_id = clerk(db)
    request_id = routed(client, db, settings, firm, patient__last_name=f"Reyes-{unique('r')[2:]}")
    me = signed_in(app, me_email)
    row = next(r for r in queue_rows(me, "?assigned=nobody") if r[0] == request_id)[2]
    assert 'data-action="claim"' in row and 'data-action="assign"' in row and colleague_email in row
    view = {"facility": "tufts-mc", "assigned": "nobody", "sort": "due_on"}
    claimed = post(me, f"/portal/queue/requests/{request_id}/claim", view)
    assert claimed.status_code == 303
    assert claimed.headers["Location"] == "/portal/queue?facility=tufts-mc&assigned=nobody&done=claim"
    assert request_row(db, request_id).status == "in_progress"
    after = me.get(claimed.headers["Location"]).get_data(as_text=True)
    assert 'id="queue-notice"' in after and "Claimed" in after

    row = next(r for r in queue_rows(me, "?assigned=me") if r[0] == request_id)[2]
    assert 'data-action="unclaim"' in row and "<strong>you</strong>" in row
    colleague = signed_in(app, colleague_email)
    stolen = post(colleague, f"/portal/queue/requests/{request_id}/claim", {"facility": "tufts-mc"})
    html = stolen.get_data(as_text=True)
    assert stolen.status_code == 409 and 'class="error-summary"' in html and "Another clerk" in html
    assert "<title>Queue" in html

    reassigned = post(me, f"/portal/queue/requests/{request_id}/assign", {"facility": "tufts-mc",
                                                                           "user_id": colleague_id})
    assert reassigned.status_code == 303 and reassigned.headers["Location"].endswith("done=assign")
    assert request_row(db, request_id).assigned_to == f"user:{colleague_id}"
    row = next(r for r in queue_rows(me, "?status=in_progress") if r[0] == request_id)[2]
    assert colleague_email in row and 'data-action="unclaim"' not in row
    assert post(me, f"/portal/queue/requests/{request_id}/assign", {"facility": "tufts-mc"}).status_code == 422
    assert post(me, f"/portal/queue/requests/{request_id}/cancel", {"facility": "tufts-mc"}).status_code == 404

    unclaimed = post(colleague, f"/portal/queue/requests/{request_id}/unclaim", {"facility": "tufts-mc"})
    assert unclaimed.status_code == 303
    req = request_row(db, request_id)
    assert (req.status, req.assigned_to) == ("routed", None)

    # From search results the answer is the results again (the terms never go into the redirect).
    surname = request_row(db, request_id).patient["last_name"]
    again = post(me, f"/portal/queue/requests/{request_id}/claim", {"facility": "tufts-mc", "text": surname})
    html = again.get_data(as_text=True)
    assert again.status_code == 200 and "Location" not in again.headers and 'id="results-title"' in html
    assert "Claimed" in html and request_id in html
    assert_no_url_carries(html, surname)
    other = signed_in(app, make_user(db, ["facility_staff"], ["lowell-general"]))
    assert post(other, f"/portal/queue/requests/{request_id}/assign", {"facility": "lowell-general",
                                                                        "user_id": colleague_id}).status_code == 404


# ---- the dashboard --------------------------------------------------------------------------------------------

FACILITY = "melrosewakefield"  # 10 calendar days
TODAY = date(2025, 3, 14)  # a window no other test's clock visits
NOW = datetime.combine(TODAY, time(12, 0), tzinfo=BOSTON)


def boston(day: date, hour: int = 12, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=BOSTON).astimezone(UTC)


def dashboard(client, headers) -> dict:
    response = client.get(f"/v1/facilities/{FACILITY}/dashboard", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_dashboard_counts_due_median_and_daily_flow_in_the_facility_calendar(app, client, db, settings, firm):
    clerk_email, _ = clerk(db, FACILITY)
    staff_headers = sign_in(client, clerk_email)

    def at(moment: datetime, action):
        with time_machine.travel(moment, tick=False):
            return action(sign_in(client, clerk_email))

    with time_machine.travel(NOW, tick=False):
        before = dashboard(client, sign_in(client, clerk_email))
    assert before["as_of"] == "2025-03-14" and before["timezone"] == FACILITY_TIMEZONE
    assert before["turnaround"] == {"from": "2025-02-13", "to": "2025-03-14", "released": 0, "median_days": None}
    assert all(day["arrivals"] == day["releases"] == 0 for day in before["daily"])  # nobody else's window

    def filed(submitted: datetime) -> str:
        on = submitted.astimezone(BOSTON).date()
        request_id = draft(client, firm, FACILITY, today=on, records__date_from=str(on - timedelta(days=400)))
        with time_machine.travel(submitted, tick=False):
            submit(client, db, settings, firm, request_id)
        return request_id

    def released(request_id: str, moment: datetime) -> None:
        assert client.post(f"/v1/requests/{request_id}/claim", headers=staff_headers).status_code == 200
        upload = client.post(f"/v1/requests/{request_id}/documents", headers=staff_headers,
                             content_type="multipart/form-data",
                             data={"kind": "release", "file": (io.BytesIO(samples.minimal_pdf()), "records.pdf")})
        assert upload.status_code == 201, upload.get_json()
        done = at(moment, lambda h: client.post(f"/v1/requests/{request_id}/transitions", headers=h,
                                                json={"to": "fulfilled"}))
        assert done.status_code == 200, done.get_json()

    due_today = filed(boston(date(2025, 3, 4)))  # + 10 days: due on the 14th
    overdue = filed(boston(date(2025, 3, 1)))  # due on the 11th, claimed and still being worked
    assert client.post(f"/v1/requests/{overdue}/claim", headers=staff_headers).status_code == 200
    filed(boston(date(2025, 3, 10)))  # due on the 20th
    released(filed(boston(date(2025, 2, 19))), boston(date(2025, 2, 24)))  # 5 days
    released(filed(boston(date(2025, 2, 25))), boston(date(2025, 3, 5), 9))  # 8 days
    released(filed(boston(date(2025, 1, 20))), boston(date(2025, 2, 14)))  # 25 days, arrived before the window
    # 23:30 in Boston is already the next day in UTC: it arrives on the 3rd, and is released 2 days later.
    released(filed(boston(date(2025, 3, 3), 23, 30)), boston(date(2025, 3, 5), 16))
    returned = filed(boston(date(2025, 2, 26)))
    assert client.post(f"/v1/requests/{returned}/claim", headers=staff_headers).status_code == 200
    assert at(boston(date(2025, 2, 27)), lambda h: client.post(
        f"/v1/requests/{returned}/transitions", headers=h, json={"to": "returned", "reasons": ["INCOMPLETE"]})
    ).status_code == 200
    assert request_row(db, due_today).due_on == TODAY and request_row(db, overdue).due_on == date(2025, 3, 11)

    with time_machine.travel(NOW, tick=False):
        after = dashboard(client, sign_in(client, clerk_email))
        portal = signed_in(app, clerk_email)
        page = portal.get(f"/portal/dashboard?facility={FACILITY}")
    delta = {status: after["counts"][status] - before["counts"][status] for status in after["counts"]}
    assert delta == {"submitted": 0, "routed": 2, "in_progress": 1, "on_hold": 0, "awaiting_payment": 0,
                     "fulfilled": 4, "returned": 1, "denied": 0, "cancelled": 0}
    assert after["open"] - before["open"] == 3
    assert (after["due_today"] - before["due_today"], after["overdue"] - before["overdue"]) == (1, 1)
    assert after["turnaround"] == {"from": "2025-02-13", "to": "2025-03-14", "released": 4, "median_days": 6.5}
    flow = {day["date"]: (day["arrivals"], day["releases"]) for day in after["daily"]}
    assert len(flow) == 30 and after["daily"][0]["date"] == "2025-02-13" and after["daily"][-1]["date"] == "2025-03-14"
    assert {d: v for d, v in flow.items() if v != (0, 0)} == {
        "2025-02-14": (0, 1), "2025-02-19": (1, 0), "2025-02-24": (0, 1), "2025-02-25": (1, 0),
        "2025-02-26": (1, 0), "2025-03-01": (1, 0), "2025-03-03": (1, 0), "2025-03-04": (1, 0),
        "2025-03-05": (0, 2), "2025-03-10": (1, 0)}

    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "<title>Dashboard" in html
    assert re.search(r'data-figure="due_today">(\d+)<', html).group(1) == str(after["due_today"])
    assert re.search(r'data-figure="overdue">(\d+)<', html).group(1) == str(after["overdue"])
    assert re.search(r'data-figure="median">([^<]+)<', html).group(1) == "6.5"
    bars = {(d, s): int(v) for d, s, v in re.findall(
        r'<rect class="chart-bar chart-\w+" [^>]*data-date="([\d-]+)" data-series="(\w+)" data-value="(\d+)"', html)}
    assert bars == {("2025-02-14", "releases"): 1, ("2025-02-19", "arrivals"): 1, ("2025-02-24", "releases"): 1,
                    ("2025-02-25", "arrivals"): 1, ("2025-02-26", "arrivals"): 1, ("2025-03-01", "arrivals"): 1,
                    ("2025-03-03", "arrivals"): 1, ("2025-03-04", "arrivals"): 1, ("2025-03-05", "releases"): 2,
                    ("2025-03-10", "arrivals"): 1}
    assert text_of(html, "flow-table").endswith("Total 7 4")
    assert '<tr data-day="2025-03-05"><th scope="row">Mar 5, 2025</th><td>0</td><td>2</td></tr>' in html
    assert 'role="img" aria-labelledby="flow-chart-title flow-chart-desc"' in html and " style=" not in html
    assert audit_actions(db, "dashboard.read", FACILITY)
    other = sign_in(client, make_user(db, ["facility_staff"], ["tufts-mc"]))
    assert client.get(f"/v1/facilities/{FACILITY}/dashboard", headers=other).status_code == 403
    assert signed_in(app, make_user(db, ["facility_staff"], ["tufts-mc"])).get(
        f"/portal/dashboard?facility={FACILITY}").status_code == 403
    assert client.get(f"/v1/facilities/{FACILITY}/dashboard", headers=bearer(firm.api_key)).status_code == 403

"""Records staff pages through Flask's test client on both databases: the queue, claim, transitions with
reasons shown on the request page, the document viewer, tenancy and CSRF."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from gateway.adapters import build_redis
from gateway.audit.models import AuditEvent
from gateway.intake.models import Document, RecordsRequest
from gateway.portal.templating import REASON_LABELS
from gateway.routing import relay
from gateway.routing.dispatch import RqDispatcher
from tests import samples
from tests.factories import facility_today, make_tenant, make_user
from tests.portal.helpers import portal_client, portal_sign_in
from tests.routing.helpers import submitted

# Judged against the facilities' calendar: .ci/run repeats these with the machine in far time zones.
# One database (tests/conftest.py): page rendering over service functions the API tests run on both databases.
pytestmark = [pytest.mark.date_sensitive, pytest.mark.one_database]

_ROW = re.compile(r'<tr data-request="([0-9a-f-]{36})"( class="overdue")?>(.*?)</tr>', re.S)
_NEXT = re.compile(r'<p class="pager"><a href="([^"]+)"')


@pytest.fixture(scope="module")
def firm(db):
    return make_tenant(db)


def _signed_in(app, email: str):
    client = portal_client(app)
    client.csrf = portal_sign_in(client, email)
    return client


@pytest.fixture
def staff(app, db):
    """Records staff of Tufts Medical Center, signed in to the portal."""
    return _signed_in(app, make_user(db, ["facility_staff"], ["tufts-mc"]))


@pytest.fixture
def requester(app, firm):
    return _signed_in(app, firm.requester_email)


def routed(app, db, settings, tenant, facility: str = "tufts-mc") -> str:
    """A request submitted through the API and published by the outbox relay, so it is `routed`."""
    request_id = submitted(app.test_client(), tenant, facility)
    dispatcher = RqDispatcher(build_redis(settings))
    while relay.publish_due(db, dispatcher, batch=100).done:
        pass
    with db.transaction() as session:
        assert session.get(RecordsRequest, request_id).status == "routed"
    return request_id


def queue_rows(client, query: str = "") -> list[tuple[str, bool, str]]:
    """Every row of the queue, following the pager: (request id, overdue, row html) in page order."""
    rows, url = [], f"/portal/queue{query}"
    while url:
        response = client.get(url.replace("&amp;", "&"))
        assert response.status_code == 200, response.get_data(as_text=True)[:1000]
        html = response.get_data(as_text=True)
        rows += [(m.group(1), bool(m.group(2)), m.group(3)) for m in _ROW.finditer(html)]
        pager = _NEXT.search(html)
        url = pager.group(1) if pager else None
    return rows


def post(client, path: str, data=None, *, csrf: bool = True):
    return client.post(path, data={**(data or {}), **({"csrf_token": client.csrf} if csrf else {})})


def status_of(db, request_id: str) -> str:
    with db.transaction() as session:
        return session.get(RecordsRequest, request_id).status


def test_queue_lists_the_facility_oldest_due_first_overdue_flagged_without_names(app, db, settings, firm, staff):
    later, overdue = routed(app, db, settings, firm), routed(app, db, settings, firm)
    elsewhere = routed(app, db, settings, firm, "lowell-general")
    with db.transaction() as session:  # test setup: one of them is past its due date
        session.execute(update(RecordsRequest).where(RecordsRequest.id == overdue)
                        .values(due_on=facility_today() - timedelta(days=2)))
    first = staff.get("/portal/queue")
    html = first.get_data(as_text=True)
    assert first.status_code == 200 and "<title>Queue" in html and "Tufts Medical Center" in html
    assert "Silva" not in html and "Ana " not in html  # the queue never shows a patient
    rows = queue_rows(staff)
    ids = [row[0] for row in rows]
    assert later in ids and overdue in ids and elsewhere not in ids
    assert ids.index(overdue) < ids.index(later)
    flagged = {row[0]: row for row in rows}
    assert flagged[overdue][1] and "overdue-flag" in flagged[overdue][2] and "Overdue" in flagged[overdue][2]
    assert not flagged[later][1] and "Overdue" not in flagged[later][2]
    assert "Nobody yet" in flagged[later][2] and f'/portal/requests/{later}"' in flagged[later][2]
    assert ">Open<" in flagged[later][2]
    with db.transaction() as session:
        assert session.scalars(select(AuditEvent).where(AuditEvent.action == "queue.read",
                                                        AuditEvent.object_id == "tufts-mc")).first()


def test_queue_filters_facility_choice_and_refusals(app, db, settings, firm, requester):
    tufts, lowell = routed(app, db, settings, firm), routed(app, db, settings, firm, "lowell-general")
    both = _signed_in(app, make_user(db, ["facility_staff"], ["tufts-mc", "lowell-general"]))
    default = [row[0] for row in queue_rows(both)]  # the first facility in sorted order
    assert lowell in default and tufts not in default
    chosen = [row[0] for row in queue_rows(both, "?facility=tufts-mc&status=routed")]
    assert tufts in chosen and lowell not in chosen
    assert tufts not in [row[0] for row in queue_rows(both, "?facility=tufts-mc&status=in_progress")]
    assert tufts not in [row[0] for row in queue_rows(both, "?facility=tufts-mc&queue=legal-review")]
    assert tufts in [row[0] for row in queue_rows(both, "?facility=tufts-mc&queue=facility")]
    page = both.get("/portal/queue").get_data(as_text=True)
    assert 'id="filter-facility"' in page and 'for="filter-status"' in page and 'for="filter-queue"' in page
    for query in ("?status=fulfilled", "?queue=elsewhere"):
        refused = both.get(f"/portal/queue{query}")
        assert refused.status_code == 422 and "text/html" in refused.content_type
        assert 'data-error-status="422"' in refused.get_data(as_text=True)
    foreign = both.get("/portal/queue?facility=melrosewakefield")
    assert foreign.status_code == 403 and "text/html" in foreign.content_type
    assert requester.get("/portal/queue").status_code == 403


def test_staff_of_another_facility_cannot_see_or_claim(app, db, settings, firm):
    request_id = routed(app, db, settings, firm)
    other = _signed_in(app, make_user(db, ["facility_staff"], ["lowell-general"]))
    page = other.get(f"/portal/requests/{request_id}")
    assert page.status_code == 404 and 'data-error-status="404"' in page.get_data(as_text=True)
    assert post(other, f"/portal/requests/{request_id}/claim").status_code == 404
    assert post(other, f"/portal/requests/{request_id}/transition", {"to": "denied", "reasons": "OTHER"}
                ).status_code == 404
    assert status_of(db, request_id) == "routed"


def test_claim_then_return_with_reasons_the_requester_reads(app, db, settings, firm, staff, requester):
    request_id = routed(app, db, settings, firm)
    page = staff.get(f"/portal/requests/{request_id}").get_data(as_text=True)
    assert 'id="staff-actions"' in page and 'id="claim-request"' in page and "Nobody has claimed it yet" in page
    claimed = post(staff, f"/portal/requests/{request_id}/claim")
    assert claimed.status_code == 303 and f"/portal/requests/{request_id}" in claimed.headers["Location"]
    assert status_of(db, request_id) == "in_progress"
    page = staff.get(f"/portal/requests/{request_id}").get_data(as_text=True)
    assert "Assigned to <strong>you</strong>" in page and 'id="claim-request"' not in page
    assert '<label for="f-to">Move to</label>' in page
    assert '<option value="routed">Unclaim (back to the queue)' in page  # not in review: routed unclaims it
    assert '<legend>Reasons</legend>' in page and 'value="INCOMPLETE"' in page and '<label for="f-note">' in page
    row = next(r for r in queue_rows(staff, "?status=in_progress") if r[0] == request_id)
    assert "<strong>you</strong>" in row[2]

    again = post(staff, f"/portal/requests/{request_id}/claim")  # a stale Claim button: it is yours already
    assert again.status_code == 303 and status_of(db, request_id) == "in_progress"

    no_reason = post(staff, f"/portal/requests/{request_id}/transition",
                     {"to": "returned", "note": "Second page missing."})
    html = no_reason.get_data(as_text=True)
    assert no_reason.status_code == 422 and 'class="error-summary"' in html
    assert 'href="#f-reasons"' in html and "give at least one reason code" in html and 'id="f-reasons"' in html
    assert ">Second page missing.</textarea>" in html  # what was typed is kept
    assert 'id="staff-actions"' in html and "Ana Silva" in html  # the request page itself, shown again
    assert status_of(db, request_id) == "in_progress"

    control = post(staff, f"/portal/requests/{request_id}/transition",
                   {"to": "returned", "reasons": "INCOMPLETE", "note": "bad\u202etext"})
    assert control.status_code == 422 and 'href="#f-note"' in control.get_data(as_text=True)
    unknown = post(staff, f"/portal/requests/{request_id}/transition", {"to": "cancelled"})
    assert unknown.status_code == 422 and 'href="#f-to"' in unknown.get_data(as_text=True)

    note = "Please include the second page of the authorization."
    returned = post(staff, f"/portal/requests/{request_id}/transition",
                    {"to": "returned", "reasons": ["INCOMPLETE"], "note": f"  {note}  "})
    assert returned.status_code == 303, returned.get_data(as_text=True)[:2000]
    assert status_of(db, request_id) == "returned"
    seen = requester.get(f"/portal/requests/{request_id}").get_data(as_text=True)
    reasons = re.search(r'<section class="notice warn" id="return-reasons".*?</section>', seen, re.S).group(0)
    assert REASON_LABELS["INCOMPLETE"] in reasons and note in reasons


def test_fulfilled_needs_a_release_document(app, db, settings, firm, staff):
    request_id = routed(app, db, settings, firm)
    assert post(staff, f"/portal/requests/{request_id}/claim").status_code == 303
    page = staff.get(f"/portal/requests/{request_id}").get_data(as_text=True)
    assert 'id="release-needed"' in page
    refused = post(staff, f"/portal/requests/{request_id}/transition", {"to": "fulfilled"})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 409 and 'class="error-summary"' in html
    assert "Upload the released records" in html and 'id="staff-actions"' in html
    assert status_of(db, request_id) == "in_progress"


def test_actions_without_the_csrf_token_are_refused(app, db, settings, firm, staff):
    request_id = routed(app, db, settings, firm)
    for path, data in ((f"/portal/requests/{request_id}/claim", {}),
                       (f"/portal/requests/{request_id}/transition", {"to": "denied", "reasons": "OTHER"})):
        response = post(staff, path, data, csrf=False)
        assert response.status_code == 403 and "text/html" in response.content_type
        assert 'data-error-status="403"' in response.get_data(as_text=True)
        forged = staff.post(path, data={**data, "csrf_token": "x" * 43})
        assert forged.status_code == 403
    assert status_of(db, request_id) == "routed"


def test_view_document_streams_the_bytes_framed_only_by_the_portal_and_audited(app, db, settings, firm, staff,
                                                                               requester):
    request_id = routed(app, db, settings, firm)
    with db.transaction() as session:
        document_id = session.scalars(select(Document.id).where(Document.request_id == request_id)).one()
    page = staff.get(f"/portal/requests/{request_id}").get_data(as_text=True)
    assert f"/portal/requests/{request_id}/documents/{document_id}/view" in page
    response = staff.get(f"/portal/requests/{request_id}/documents/{document_id}/view")
    assert response.status_code == 200
    assert response.get_data() == samples.minimal_pdf()
    assert response.mimetype == "application/pdf"
    # Chrome will not render a PDF under `sandbox`; a PDF (free of active content, checked on upload) may be
    # framed by the portal's own request page only.  Images are sandboxed (gateway.portal.staff.VIEWER_CSP).
    assert response.headers["Content-Security-Policy"] == "frame-ancestors 'self'"
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Disposition"].startswith('inline; filename="auth.pdf"')
    assert response.headers["Cache-Control"] == "no-store"
    with db.transaction() as session:
        reads = session.scalars(select(AuditEvent).where(AuditEvent.action == "document.read",
                                                         AuditEvent.object_id == document_id)).all()
    assert len(reads) == 1 and reads[0].actor.startswith("user:")
    # The requester may view their own document; another facility's staff gets the 404 page.
    assert requester.get(f"/portal/requests/{request_id}/documents/{document_id}/view").status_code == 200
    other = _signed_in(app, make_user(db, ["facility_staff"], ["lowell-general"]))
    assert other.get(f"/portal/requests/{request_id}/documents/{document_id}/view").status_code == 404
    # Pages keep the portal's own policy: only the viewer is sandboxed, and only the staff request page frames.
    queue = staff.get("/portal/queue")
    assert "sandbox" not in queue.headers["Content-Security-Policy"]
    assert "frame-src" not in queue.headers["Content-Security-Policy"] and queue.headers["X-Frame-Options"] == "DENY"
    framing = staff.get(f"/portal/requests/{request_id}")
    assert "frame-src 'self'" in framing.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in framing.headers["Content-Security-Policy"]
    assert framing.headers["X-Frame-Options"] == "DENY"
    assert "frame-src" not in requester.get(f"/portal/requests/{request_id}").headers["Content-Security-Policy"]


def test_view_document_when_storage_is_down_is_the_503_page(app, db, settings, firm, staff, monkeypatch):
    from gateway.storage.store import StorageUnavailable

    request_id = routed(app, db, settings, firm)
    with db.transaction() as session:
        document_id = session.scalars(select(Document.id).where(Document.request_id == request_id)).one()

    def unreachable(key):
        raise StorageUnavailable("open: connection refused")

    monkeypatch.setattr(app.extensions["gateway"].store, "open", unreachable)
    response = staff.get(f"/portal/requests/{request_id}/documents/{document_id}/view")
    assert response.status_code == 503 and "text/html" in response.content_type
    assert response.headers["Retry-After"] and "STORAGE_UNAVAILABLE" in response.get_data(as_text=True)
    assert "sandbox" not in response.headers["Content-Security-Policy"]  # an error page, not the document

"""The request form sent to several facilities at once: one draft per facility filed together, the group's
page with each request's checks, one upload for all, and "submit every ready request" (each on its own)."""

from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import select

from gateway.intake.models import Document, RecordsRequest
from tests import samples
from tests.factories import make_tenant
from tests.portal.helpers import portal_client, portal_sign_in
from tests.portal.test_request_pages import XHR, form_for

# Judged against the facilities' calendar: .ci/run repeats these with the machine in far time zones.
# One database (tests/conftest.py): page flows over the group service functions the API tests run on both.
pytestmark = [pytest.mark.date_sensitive, pytest.mark.one_database]

SYSTEM = "Tufts Medicine"  # the health system's name covers each of its facilities on the authorization


@pytest.fixture(scope="module")
def firm(db):
    return make_tenant(db)


def create_group(browser, also, **changes) -> str:
    data = {**form_for("tufts-mc", **changes), "also_facilities": also, "csrf_token": browser.csrf}
    response = browser.post("/portal/requests/new", data=data)
    assert response.status_code == 303, response.get_data(as_text=True)[:2000]
    location = response.headers["Location"]
    assert "created=1" in location
    return re.search(r"/portal/request-groups/([0-9a-f-]{36})", location).group(1)


def group_requests(db, group_id: str) -> list[RecordsRequest]:
    with db.transaction() as session:
        rows = session.scalars(select(RecordsRequest).where(RecordsRequest.group_id == group_id)).all()
        session.expunge_all()
        return rows


def upload_to_group(browser, group_id: str, data: bytes):
    return browser.post(f"/portal/request-groups/{group_id}/documents", content_type="multipart/form-data",
                        headers={**XHR, "X-CSRF-Token": browser.csrf},
                        data={"kind": "authorization", "file": (io.BytesIO(data), "signed.pdf")})


def test_ticking_other_facilities_files_one_draft_each_and_shows_the_group(browser, db):
    group_id = create_group(browser, ["lowell-general", "tufts-mc", "melrosewakefield", "lowell-general"],
                            **{"authorization.discloser": SYSTEM})
    requests = group_requests(db, group_id)
    # The chosen facility first, then the others in form order, each once (tufts-mc ticked again is ignored).
    assert sorted(r.facility for r in requests) == ["lowell-general", "melrosewakefield", "tufts-mc"]
    assert {r.status for r in requests} == {"draft"} and len({r.reference for r in requests}) == 1

    page = browser.get(f"/portal/request-groups/{group_id}?created=1")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Drafts saved, one per facility" in html
    rows = re.findall(r'<tr data-request-id="([0-9a-f-]{36})">', html)
    assert set(rows) == {r.id for r in requests}
    assert html.count('data-code="DOC_AUTHORIZATION_REQUIRED"') == 3  # each needs the signed form, nothing else
    assert f'data-upload-url="/portal/request-groups/{group_id}/documents"' in html
    assert 'id="submit-group"' in html


def test_one_upload_serves_every_draft_and_submit_all_sends_each(browser, db):
    group_id = create_group(browser, ["lowell-general"], **{"authorization.discloser": SYSTEM})
    uploaded = upload_to_group(browser, group_id, samples.minimal_pdf())
    assert uploaded.status_code == 201, uploaded.get_json()
    assert len(uploaded.get_json()["items"]) == 2
    with db.transaction() as session:
        keys = set(session.scalars(select(Document.storage_key).join(RecordsRequest)
                                   .where(RecordsRequest.group_id == group_id)))
    assert len(keys) == 1  # scanned and stored once
    assert browser.get(f"/portal/request-groups/{group_id}").get_data(as_text=True).count("Ready to submit") == 2

    sent = browser.post(f"/portal/request-groups/{group_id}/submit", data={"csrf_token": browser.csrf})
    assert sent.status_code == 303
    assert {r.status for r in group_requests(db, group_id)} <= {"submitted", "routed"}
    after = browser.get(f"/portal/request-groups/{group_id}").get_data(as_text=True)
    assert 'id="submit-group"' not in after and 'data-upload-url' not in after


def test_submit_all_sends_the_ready_ones_and_says_why_the_others_stay(browser, db):
    # The authorization names Tufts Medical Center only: Lowell General's request would be sent back.
    group_id = create_group(browser, ["lowell-general"], **{"authorization.discloser": "Tufts Medical Center"})
    assert upload_to_group(browser, group_id, samples.minimal_pdf()).status_code == 201
    answer = browser.post(f"/portal/request-groups/{group_id}/submit", data={"csrf_token": browser.csrf})
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert "Not every request was submitted" in html and "1 of 2" in html
    statuses = {r.facility: r.status for r in group_requests(db, group_id)}
    assert statuses["lowell-general"] == "draft" and statuses["tufts-mc"] in ("submitted", "routed")
    lowell = next(r for r in group_requests(db, group_id) if r.facility == "lowell-general")
    row = html[html.index(f'data-request-id="{lowell.id}"'):]
    assert 'data-code="AUTH_DISCLOSER_MISMATCH"' in row[:row.index("</tr>")]


def test_a_facility_not_in_the_list_refuses_the_form_and_creates_nothing(browser, db, firm):
    with db.transaction() as session:
        before = len(session.scalars(select(RecordsRequest.id).where(RecordsRequest.org_id == firm.org_id)).all())
    data = {**form_for("tufts-mc"), "also_facilities": ["no-such-hospital"], "csrf_token": browser.csrf}
    response = browser.post("/portal/requests/new", data=data)
    assert response.status_code == 422
    assert "Other facilities: choose facilities from the list." in response.get_data(as_text=True)
    with db.transaction() as session:
        after = len(session.scalars(select(RecordsRequest.id).where(RecordsRequest.org_id == firm.org_id)).all())
    assert after == before


def test_another_organizations_group_is_not_found(app, browser, db):
    group_id = create_group(browser, ["lowell-general"], **{"authorization.discloser": SYSTEM})
    other = portal_client(app)
    other.csrf = portal_sign_in(other, make_tenant(db).requester_email)
    assert other.get(f"/portal/request-groups/{group_id}").status_code == 404
    assert upload_to_group(other, group_id, samples.minimal_pdf()).status_code == 404
    assert other.post(f"/portal/request-groups/{group_id}/submit",
                      data={"csrf_token": other.csrf}).status_code == 404
    assert {r.status for r in group_requests(db, group_id)} == {"draft"}


def test_the_edit_form_offers_no_other_facilities(browser):
    assert 'name="also_facilities"' in browser.get("/portal/requests/new").get_data(as_text=True)
    from tests.portal.test_request_pages import create

    request_id = create(browser)
    assert 'name="also_facilities"' not in browser.get(f"/portal/requests/{request_id}/edit").get_data(as_text=True)

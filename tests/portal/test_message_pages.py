"""The message thread and the account page through Flask's test client on both databases: requester and staff
write, internal notes stay with staff, refusals shown beside the form, the e-mail switch."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from gateway.audit.models import AuditEvent
from gateway.auth.models import User
from tests.factories import make_tenant, make_user, request_body
from tests.portal.helpers import portal_client, portal_sign_in
from tests.portal.test_staff_pages import routed

# One database (tests/conftest.py): page rendering over service functions the API tests run on both databases.
pytestmark = pytest.mark.one_database

NOTE = "Chart is on microfilm, ask Dana in archives"


@pytest.fixture(scope="module")
def firm(db):
    return make_tenant(db)


def signed_in(app, email: str):
    client = portal_client(app)
    client.csrf = portal_sign_in(client, email)
    return client


def write(client, request_id, body, **form):
    return client.post(f"/portal/requests/{request_id}/messages",
                       data={"body": body, "csrf_token": client.csrf, **form})


def page(client, request_id) -> str:
    response = client.get(f"/portal/requests/{request_id}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_requester_and_staff_talk_on_the_request_page_and_notes_stay_with_staff(app, db, settings, firm):
    request_id = routed(app, db, settings, firm)
    requester = signed_in(app, firm.requester_email)
    staff = signed_in(app, make_user(db, ["facility_staff"], ["tufts-mc"]))
    assert 'id="no-messages"' in page(requester, request_id)
    assert 'id="f-internal"' not in page(requester, request_id)  # no internal-note box for requesters

    sent = write(requester, request_id, "Could you include the 2025 MRI report?")
    assert sent.status_code == 303 and sent.headers["Location"].endswith(f"/portal/requests/{request_id}#messages")
    assert write(staff, request_id, "Yes, it will be in the release.").status_code == 303
    assert write(staff, request_id, NOTE, internal="1").status_code == 303

    staff_view = page(staff, request_id)
    assert "Could you include the 2025 MRI report?" in staff_view and NOTE in staff_view
    assert 'data-internal="true"' in staff_view and "Internal note" in staff_view
    requester_view = page(requester, request_id)
    assert "Yes, it will be in the release." in requester_view
    assert "Records team, Tufts Medical Center" in requester_view
    assert NOTE not in requester_view and 'data-internal="true"' not in requester_view
    # The due date says which clock set it.
    assert 'data-due-basis="facility_target"' in requester_view
    assert "Facility policy: target turnaround (5 business days)" in requester_view
    # A crafted form cannot make a requester's message internal.
    assert write(requester, request_id, "sneaky", internal="1").status_code == 403
    with db.transaction() as session:
        reads = session.scalars(select(AuditEvent).where(AuditEvent.object_id == request_id,
                                                         AuditEvent.action == "request.messages.read")).all()
    assert len(reads) >= 3


def test_an_empty_or_overlong_message_is_refused_beside_the_form(app, db, settings, firm):
    request_id = routed(app, db, settings, firm)
    requester = signed_in(app, firm.requester_email)
    empty = write(requester, request_id, "   ")
    assert empty.status_code == 422
    html = empty.get_data(as_text=True)
    assert "The message was not sent" in html and "Write a message first." in html
    assert 'aria-invalid="true"' in html and 'href="#f-message"' in html
    long = write(requester, request_id, "x" * 5001)
    assert long.status_code == 422 and "at most 5,000 characters" in long.get_data(as_text=True)


def test_drafts_have_no_thread(app, firm):
    requester = signed_in(app, firm.requester_email)
    created = app.test_client().post("/v1/requests", json=request_body(),
                                     headers={"Authorization": f"Bearer {firm.api_key}"})
    assert 'id="messages"' not in page(requester, created.get_json()["id"])


def test_the_account_page_turns_notification_email_off_and_on(app, db, firm):
    requester = signed_in(app, firm.requester_email)
    account = requester.get("/portal/account")
    assert account.status_code == 200
    html = account.get_data(as_text=True)
    assert firm.requester_email in html and 'id="f-email_notifications"' in html and "checked" in html
    off = requester.post("/portal/account/notifications", data={"csrf_token": requester.csrf})
    assert off.status_code == 303
    assert "no longer receive" in requester.get(off.headers["Location"]).get_data(as_text=True)
    with db.transaction() as session:
        assert session.get(User, firm.requester_id).email_notifications is False
    on = requester.post("/portal/account/notifications",
                        data={"csrf_token": requester.csrf, "email_notifications": "on"})
    assert on.status_code == 303
    with db.transaction() as session:
        assert session.get(User, firm.requester_id).email_notifications is True
        actions = session.scalars(select(AuditEvent.action).where(AuditEvent.object_id == firm.requester_id)).all()
    assert {"user.email_notifications.off", "user.email_notifications.on"} <= set(actions)
    # Staff have an account page too, without the switch (they get no notification e-mail).
    staff = signed_in(app, make_user(db, ["facility_staff"], ["tufts-mc"]))
    assert 'id="f-email_notifications"' not in staff.get("/portal/account").get_data(as_text=True)

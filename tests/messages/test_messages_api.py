"""Messages on a request over HTTP (API.md v1.1 "Messages on a request"), against the real services on both
databases: who may write and read, internal notes, paging, the event (ids only), the audit, and that the text
never leaves through a webhook, the outbox, the audit trail or a log."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from gateway.audit.models import AuditEvent
from gateway.outbox import OutboxMessage
from gateway.webhooks.models import Webhook, WebhookDelivery
from tests.factories import bearer, make_tenant, make_user, request_body, sign_in
from tests.intake.test_lifecycle_api import publish, subscribe
from tests.routing.helpers import submitted

SECRET = "Ana Silva's page 2 (MRN 44-1729) is unreadable"


@pytest.fixture
def firm(db):
    return make_tenant(db, "law_firm")


@pytest.fixture
def clerk(client, db):
    return sign_in(client, make_user(db, ["facility_staff"], ["tufts-mc"]))


@pytest.fixture
def routed(client, db, settings, firm) -> str:
    request_id = submitted(client, firm, "tufts-mc")
    publish(db, settings)
    return request_id


def post(client, headers, request_id, body=SECRET, **extra):
    return client.post(f"/v1/requests/{request_id}/messages", headers=headers, json={"body": body, **extra})


def thread(client, headers, request_id, **params) -> dict:
    response = client.get(f"/v1/requests/{request_id}/messages", headers=headers, query_string=params)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def org_name(db, org_id: str) -> str:
    from gateway.auth.models import Organization

    with db.transaction() as session:
        return session.get(Organization, org_id).name


def test_requester_and_staff_write_and_both_read_the_thread(client, db, firm, clerk, routed):
    requester = bearer(firm.api_key)
    first = post(client, requester, routed, "Please include the 2025 imaging reports.")
    assert first.status_code == 201, first.get_json()
    message = first.get_json()
    assert set(message) == {"id", "at", "author", "body", "internal"}
    assert message["author"] == {"kind": "requester", "name": org_name(db, firm.org_id)}
    assert message["internal"] is False and message["at"].endswith("Z")

    answer = post(client, clerk, routed, "We will add them.")
    assert answer.status_code == 201
    assert answer.get_json()["author"] == {"kind": "staff", "name": "Records team, Tufts Medical Center"}
    # A person at the firm (not only its API key) writes too, named by the organization, never by e-mail.
    person = post(client, sign_in(client, firm.requester_email), routed, "Thank you.")
    assert person.get_json()["author"]["name"] == org_name(db, firm.org_id)
    assert "@" not in str(answer.get_json()) + str(person.get_json())

    for headers in (requester, clerk):
        items = thread(client, headers, routed)["items"]
        assert [m["body"] for m in items] == ["Please include the 2025 imaging reports.", "We will add them.",
                                              "Thank you."]
    # Writing is not a change to the request: its version (and ETag) stay.
    assert client.get(f"/v1/requests/{routed}", headers=requester).get_json()["version"] == \
        client.get(f"/v1/requests/{routed}", headers=clerk).get_json()["version"]


def test_internal_notes_are_staff_only_and_make_no_event(client, db, settings, firm, clerk, routed):
    subscribe(client, firm, db)
    with db.transaction() as session:  # the firm's webhook hears about messages too
        session.scalars(select(Webhook).where(Webhook.org_id == firm.org_id)).one().events = [
            "request.status_changed", "request.message_posted"]
    note = post(client, clerk, routed, "Patient's chart is on microfilm; ask Dana.", internal=True)
    assert note.status_code == 201 and note.get_json()["internal"] is True
    visible = post(client, clerk, routed, "Working on it.")
    publish(db, settings)

    requester = bearer(firm.api_key)
    assert [m["body"] for m in thread(client, requester, routed)["items"]] == ["Working on it."]
    assert [m["internal"] for m in thread(client, clerk, routed)["items"]] == [True, False]
    # A requester may not write one, by API key or as a person.
    for headers in (requester, sign_in(client, firm.admin_email)):
        refused = post(client, headers, routed, "sneaky", internal=True)
        assert refused.status_code == 403 and refused.get_json()["code"] == "FORBIDDEN"
    # One event, for the visible message only, carrying ids.
    with db.transaction() as session:
        rows = session.scalars(select(OutboxMessage).where(OutboxMessage.request_id == routed,
                                                           OutboxMessage.kind == "notify")).all()
        events = [r.payload for r in rows if r.payload["type"] == "request.message_posted"]
        deliveries = session.scalars(select(WebhookDelivery).where(
            WebhookDelivery.event_type == "request.message_posted")).all()
    assert [e["data"] for e in events] == [{"request_id": routed, "message_id": visible.get_json()["id"]}]
    mine = [d.payload for d in deliveries if d.payload["data"]["request_id"] == routed]
    assert [p["data"] for p in mine] == [{"request_id": routed, "message_id": visible.get_json()["id"]}]


def test_the_text_never_leaves_through_outbox_webhooks_audit_or_logs(client, db, settings, firm, clerk, routed,
                                                                      caplog):
    subscribe(client, firm, db)
    caplog.set_level(logging.DEBUG)
    assert post(client, bearer(firm.api_key), routed).status_code == 201
    assert post(client, clerk, routed, SECRET, internal=True).status_code == 201
    thread(client, clerk, routed)
    publish(db, settings)
    with db.transaction() as session:
        stored = [str(r.payload) for r in session.scalars(select(OutboxMessage))]
        stored += [str(d.payload) for d in session.scalars(select(WebhookDelivery))]
        stored += [f"{a.action} {a.object_type} {a.object_id}" for a in session.scalars(select(AuditEvent))]
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for fragment in ("Ana Silva", "44-1729", "unreadable"):
        assert not any(fragment in s for s in stored), fragment
        assert fragment not in logged, fragment


def test_posts_and_reads_are_audited_against_the_request(client, db, firm, clerk, routed):
    posted = post(client, clerk, routed, "Noted.")
    thread(client, bearer(firm.api_key), routed)
    with db.transaction() as session:
        entries = session.scalars(select(AuditEvent).where(AuditEvent.object_id == routed)).all()
        by_action = {(e.action, e.request_id) for e in entries}
    assert ("request.message.post", posted.headers["X-Request-ID"]) in by_action
    assert any(action == "request.messages.read" for action, _ in by_action)


def test_the_thread_pages_oldest_first_with_cursors(client, db, firm, routed):
    requester = bearer(firm.api_key)
    for n in range(5):
        assert post(client, requester, routed, f"message {n}").status_code == 201
    seen, cursor = [], None
    while True:
        page = thread(client, requester, routed, limit=2, **({"cursor": cursor} if cursor else {}))
        seen += [m["body"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"message {n}" for n in range(5)]
    bad = client.get(f"/v1/requests/{routed}/messages?cursor=nonsense", headers=requester)
    assert bad.status_code == 400 and bad.get_json()["code"] == "INVALID_CURSOR"


def test_other_tenants_and_other_facilities_get_404_and_drafts_have_no_thread(client, db, firm, routed):
    stranger = make_tenant(db, "insurer")
    lowell = sign_in(client, make_user(db, ["facility_staff"], ["lowell-general"]))
    for headers in (bearer(stranger.api_key), lowell):
        assert post(client, headers, routed).status_code == 404
        assert client.get(f"/v1/requests/{routed}/messages", headers=headers).status_code == 404
    draft = client.post("/v1/requests", headers=bearer(firm.api_key), json=request_body()).get_json()["id"]
    refused = post(client, bearer(firm.api_key), draft)
    assert refused.status_code == 409 and refused.get_json()["code"] == "REQUEST_NOT_SUBMITTED"
    for role in (["auditor"], ["gateway_admin"]):
        assert post(client, sign_in(client, make_user(db, role)), routed).status_code == 403


@pytest.mark.parametrize("body, field", [
    ({"body": ""}, "body"), ({"body": "   "}, "body"), ({"body": "x" * 5001}, "body"), ({}, "body"),
    ({"body": "bell\x07"}, "body"), ({"body": "ok", "internal": "maybe"}, "internal"),
    ({"body": "ok", "extra": 1}, "extra"),
])
def test_invalid_bodies_are_422_with_the_field(client, firm, routed, body, field):
    response = client.post(f"/v1/requests/{routed}/messages", headers=bearer(firm.api_key), json=body)
    assert response.status_code == 422, response.get_json()
    assert field in [e["field"] for e in response.get_json()["errors"]]


def test_a_long_multiline_message_and_an_idempotent_repeat(client, db, firm, routed):
    headers = {**bearer(firm.api_key), "Idempotency-Key": "msg-1"}
    text = "Line one\nLine two\n" + "y" * 4970
    first = client.post(f"/v1/requests/{routed}/messages", headers=headers, json={"body": text})
    again = client.post(f"/v1/requests/{routed}/messages", headers=headers, json={"body": text})
    assert first.status_code == again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true" and again.get_json() == first.get_json()
    assert first.get_json()["body"] == text.strip()
    assert len(thread(client, bearer(firm.api_key), routed)["items"]) == 1

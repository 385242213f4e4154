"""The request lifecycle over HTTP (issue 12): releases disclosed only at release, withdrawal, revocation holds,
chained reviews, fixed facility and pathway, versions and If-Match — against real databases, Redis/RQ, clamd, S3."""

from __future__ import annotations

import io

import pytest
from rq import Queue
from rq.serializers import JSONSerializer
from sqlalchemy import select

from gateway.adapters import build_redis
from gateway.audit.models import AuditEvent
from gateway.intake.models import Document, RecordsRequest
from gateway.outbox import OutboxMessage
from gateway.routing import relay
from gateway.routing.dispatch import RqDispatcher
from gateway.routing.models import JobEffect
from gateway.storage import StoredObjectMissing
from gateway.webhooks.models import WebhookDelivery
from tests import samples
from tests.factories import bearer, make_tenant, make_user, request_body, sign_in
from tests.routing.helpers import run_worker, submitted

RELEASE_BYTES = samples.minimal_pdf(pages=3)


def publish(db, settings) -> None:
    """Run the outbox relay until nothing is due: queue jobs and webhook fan-out."""
    dispatcher = RqDispatcher(build_redis(settings))
    while relay.publish_due(db, dispatcher, batch=100).done:
        pass


@pytest.fixture
def firm(db):
    return make_tenant(db, "law_firm")


@pytest.fixture
def clerk(client, db):
    return sign_in(client, make_user(db, ["facility_staff"], ["tufts-mc"]))


def claimed(client, db, settings, firm, clerk, **changes) -> str:
    request_id = submitted(client, firm, "tufts-mc", **changes)
    publish(db, settings)
    response = client.post(f"/v1/requests/{request_id}/claim", headers=clerk)
    assert response.status_code == 200, response.get_json()
    return request_id


def upload_release(client, clerk, request_id) -> dict:
    response = client.post(f"/v1/requests/{request_id}/documents", headers=clerk, content_type="multipart/form-data",
                           data={"kind": "release", "file": (io.BytesIO(RELEASE_BYTES), "Ana Silva records.pdf")})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def move(client, clerk, request_id, to, reasons=(), **headers):
    return client.post(f"/v1/requests/{request_id}/transitions", headers={**clerk, **headers},
                       json={"to": to, "reasons": list(reasons)})


def requester_sees(client, firm, request_id, document_id) -> dict:
    """Every way a requester could reach a document: resource, metadata, content, timeline."""
    headers = bearer(firm.api_key)
    resource = client.get(f"/v1/requests/{request_id}", headers=headers).get_json()
    events = client.get(f"/v1/requests/{request_id}/events?limit=100", headers=headers).get_json()["items"]
    return {
        "resource": document_id in [d["id"] for d in resource["documents"]],
        "metadata": client.get(f"/v1/requests/{request_id}/documents/{document_id}", headers=headers).status_code,
        "content": client.get(f"/v1/requests/{request_id}/documents/{document_id}/content",
                              headers=headers).status_code,
        "events": any(document_id in str(e["detail"]) for e in events),
    }


def webhook_kinds(db, org_id: str, request_id: str) -> list[str]:
    from gateway.webhooks.models import Webhook

    with db.transaction() as session:
        hooks = session.scalars(select(Webhook.id).where(Webhook.org_id == org_id)).all()
        rows = session.scalars(select(WebhookDelivery).where(WebhookDelivery.webhook_id.in_(hooks))).all()
        return [r.event_type for r in rows if r.payload["data"]["request_id"] == request_id]


def subscribe(client, firm, db):
    admin = sign_in(client, firm.admin_email)
    from gateway.webhooks.models import Webhook

    with db.transaction() as session:  # a webhook row without the network check (the target is never called)
        from gateway.db import new_id, utcnow

        session.add(Webhook(id=new_id(), org_id=firm.org_id, url="https://hooks.example.test/x",
                            events=["request.status_changed", "request.document_added"], secret_sealed="-",
                            active=True, created_at=utcnow(), created_by="test"))
    return admin


# --- released records are disclosed only at release ----------------------------------------------------------

def test_a_release_is_invisible_to_the_requester_until_the_request_is_fulfilled(client, db, settings, firm, clerk):
    subscribe(client, firm, db)
    request_id = claimed(client, db, settings, firm, clerk)
    release = upload_release(client, clerk, request_id)
    publish(db, settings)
    assert requester_sees(client, firm, request_id, release["id"]) == {
        "resource": False, "metadata": 404, "content": 404, "events": False}
    assert "request.document_added" not in webhook_kinds(db, firm.org_id, request_id)
    staff_view = client.get(f"/v1/requests/{request_id}", headers=clerk).get_json()
    assert release["id"] in [d["id"] for d in staff_view["documents"]]

    assert move(client, clerk, request_id, "fulfilled").status_code == 200
    publish(db, settings)
    seen = requester_sees(client, firm, request_id, release["id"])
    assert seen == {"resource": True, "metadata": 200, "content": 302, "events": True}
    assert webhook_kinds(db, firm.org_id, request_id).count("request.document_added") == 1


@pytest.mark.parametrize("ending", ["denied", "returned", "cancelled"])
def test_denied_returned_or_cancelled_requests_never_show_their_release(client, db, settings, firm, clerk, ending):
    request_id = claimed(client, db, settings, firm, clerk)
    release = upload_release(client, clerk, request_id)
    if ending == "cancelled":  # unclaimed back to the queue, then cancelled by the requester
        assert move(client, clerk, request_id, "routed").get_json()["status"] == "routed"
        assert client.post(f"/v1/requests/{request_id}/cancel", headers=bearer(firm.api_key),
                           json={"reason": "Settled out of court"}).status_code == 200
    else:
        assert move(client, clerk, request_id, ending, ["OTHER"]).get_json()["status"] == ending
    publish(db, settings)
    assert requester_sees(client, firm, request_id, release["id"]) == {
        "resource": False, "metadata": 404, "content": 404, "events": False}
    assert "request.document_added" not in webhook_kinds(db, firm.org_id, request_id)


def test_staff_withdraw_a_release_before_fulfilment_and_its_bytes_are_deleted(app, client, db, settings, firm,
                                                                             clerk):
    request_id = claimed(client, db, settings, firm, clerk)
    release = upload_release(client, clerk, request_id)
    with db.transaction() as session:
        key = session.get(Document, release["id"]).storage_key
    store = app.extensions["gateway"].store
    assert b"".join(store.open(key)) == RELEASE_BYTES
    path = f"/v1/requests/{request_id}/documents/{release['id']}"
    assert client.delete(path, headers=bearer(firm.api_key)).status_code == 403  # requesters never withdraw
    authorization = next(d for d in client.get(f"/v1/requests/{request_id}", headers=clerk).get_json()["documents"]
                         if d["kind"] == "authorization")
    refused = client.delete(f"/v1/requests/{request_id}/documents/{authorization['id']}", headers=clerk)
    assert refused.status_code == 403  # only releases
    assert client.delete(path, headers=clerk).status_code == 204
    assert client.get(path, headers=clerk).status_code == 404
    with pytest.raises(StoredObjectMissing):
        b"".join(store.open(key))
    with db.transaction() as session:
        assert session.scalars(select(AuditEvent).where(AuditEvent.action == "document.withdraw",
                                                        AuditEvent.object_id == release["id"])).one()
    events = client.get(f"/v1/requests/{request_id}/events?limit=100", headers=bearer(firm.api_key)).get_json()
    assert "document_withdrawn" not in [e["type"] for e in events["items"]]  # staff business

    again = upload_release(client, clerk, request_id)
    assert move(client, clerk, request_id, "fulfilled").status_code == 200
    late = client.delete(f"/v1/requests/{request_id}/documents/{again['id']}", headers=clerk)
    assert late.status_code == 409 and late.get_json()["code"] == "ALREADY_RELEASED"


# --- revocation halts work in flight ---------------------------------------------------------------------------

def revocation_body(recipient="Smith & Jones LLP") -> dict:
    return {"patient": {"first_name": "Ana", "last_name": "Silva", "date_of_birth": "1980-02-29"},
            "recipient": recipient, "effective_on": "2099-01-01"}


def test_a_revocation_holds_every_open_request_and_names_only_those_the_clerk_may_see(client, db, settings, firm,
                                                                                      clerk):
    # Another patient's records must not be touched: a distinct birth date keeps this test's patient apart.
    dob = "1961-07-04"
    working = claimed(client, db, settings, firm, clerk, patient__date_of_birth=dob)
    elsewhere = submitted(client, firm, "lowell-general", patient__date_of_birth=dob)
    waiting = submitted(client, firm, "tufts-mc", patient__date_of_birth=dob)  # not yet on a queue
    other_recipient = submitted(client, firm, "tufts-mc", patient__date_of_birth=dob,
                                recipient="Other Counsel LLP")
    body = revocation_body()
    body["patient"]["date_of_birth"] = dob
    recorded = client.post("/v1/revocations", headers=clerk, json=body)
    assert recorded.status_code == 201, recorded.get_json()
    held = recorded.get_json()["held_requests"]
    # Lowell's request is held too, and so is the one not yet on a queue, but this clerk sees neither.
    assert held == [working]
    with db.transaction() as session:
        states = {rid: (session.get(RecordsRequest, rid).status, session.get(RecordsRequest, rid).hold_reason)
                  for rid in (working, elsewhere, waiting, other_recipient)}
    assert states[working] == states[elsewhere] == states[waiting] == ("on_hold", "AUTH_REVOKED")
    assert states[other_recipient][0] == "submitted"

    for to in ("fulfilled", "in_progress"):
        refused = move(client, clerk, working, to)
        assert refused.status_code == 409 and refused.get_json()["code"] == "AUTH_REVOKED", to
    cannot_upload = client.post(f"/v1/requests/{working}/documents", headers=clerk, content_type="multipart/form-data",
                                data={"kind": "release", "file": (io.BytesIO(RELEASE_BYTES), "r.pdf")})
    assert cannot_upload.status_code == 409
    returned = move(client, clerk, working, "returned", ["AUTHORIZATION_INVALID"])
    assert returned.status_code == 200 and returned.get_json()["status"] == "returned"
    events = client.get(f"/v1/requests/{working}/events?limit=100", headers=bearer(firm.api_key)).get_json()["items"]
    hold = [e for e in events if e["type"] == "status_changed" and e["status"] == "on_hold"]
    assert hold and hold[0]["detail"]["reasons"] == ["AUTH_REVOKED"]

    # The hand-over job of the request held before it reached a queue does nothing.  (The session's queue is
    # emptied first: other tests leave hand-over jobs behind that this burst worker need not run.)
    Queue("facility.tufts-mc", connection=build_redis(settings), serializer=JSONSerializer).empty()
    publish(db, settings)
    assert run_worker(settings, "tufts-mc").returncode == 0
    with db.transaction() as session:
        effects = session.scalars(select(JobEffect).where(JobEffect.request_id == waiting)).all()
        assert session.get(RecordsRequest, waiting).status == "on_hold"
    assert [e.receipt for e in effects] == [{"skipped": "revoked"}]


def test_a_revoked_draft_cannot_be_submitted(client, db, firm, clerk):
    dob = "1959-03-03"
    draft = client.post("/v1/requests", headers=bearer(firm.api_key),
                        json=request_body(patient__date_of_birth=dob)).get_json()
    client.post(f"/v1/requests/{draft['id']}/documents", headers=bearer(firm.api_key),
                content_type="multipart/form-data",
                data={"kind": "authorization", "file": (io.BytesIO(samples.minimal_pdf()), "a.pdf")})
    body = revocation_body()
    body["patient"]["date_of_birth"] = dob
    assert client.post("/v1/revocations", headers=clerk, json=body).get_json()["held_requests"] == []
    refused = client.post(f"/v1/requests/{draft['id']}/submit", headers=bearer(firm.api_key))
    assert refused.status_code == 422 and "AUTH_REVOKED" in {e["code"] for e in refused.get_json()["errors"]}


# --- chained reviews -------------------------------------------------------------------------------------------

def test_a_court_order_for_mental_health_records_passes_legal_then_sensitive_review(client, db, settings, firm,
                                                                                    clerk):
    body = request_body("tufts-mc", pathway="court_order", records__sensitive=["mental_health"])
    draft = client.post("/v1/requests", json=body, headers=bearer(firm.api_key)).get_json()
    client.post(f"/v1/requests/{draft['id']}/documents", headers=bearer(firm.api_key),
                content_type="multipart/form-data",
                data={"kind": "court_order", "file": (io.BytesIO(samples.minimal_pdf()), "order.pdf")})
    submitted_ = client.post(f"/v1/requests/{draft['id']}/submit", headers=bearer(firm.api_key))
    assert submitted_.status_code == 202, submitted_.get_json()
    queues = []
    for _ in range(3):
        publish(db, settings)
        current = client.get(f"/v1/requests/{draft['id']}", headers=clerk).get_json()
        queues.append(current["routing"]["queue"])
        if current["routing"]["queue"].startswith("facility."):
            break
        assert move(client, clerk, draft["id"], "routed").status_code == 200
    assert queues == ["legal-review", "sensitive-review", "facility.tufts-mc"]
    # Passing on from the facility queue itself is refused: there is no further queue.
    refused = move(client, clerk, draft["id"], "routed")
    assert refused.status_code == 409 and refused.get_json()["code"] == "INVALID_TRANSITION"


# --- facility and pathway fixed once submitted; cure without losing place --------------------------------------

def test_a_returned_request_keeps_its_facility_pathway_submission_time_and_due_date(client, db, settings, firm,
                                                                                   clerk):
    request_id = claimed(client, db, settings, firm, clerk)
    first = client.get(f"/v1/requests/{request_id}", headers=bearer(firm.api_key)).get_json()
    assert move(client, clerk, request_id, "returned", ["INCOMPLETE"]).status_code == 200
    headers = bearer(firm.api_key)
    for field, value in (("facility", "lowell-general"), ("pathway", "subpoena")):
        locked = client.patch(f"/v1/requests/{request_id}", headers=headers, json={field: value})
        assert locked.status_code == 409 and locked.get_json()["code"] == "FIELD_LOCKED", field
        assert locked.get_json()["errors"][0]["field"] == field
    fixed = client.patch(f"/v1/requests/{request_id}", headers=headers, json={"instructions": "Second page added"})
    assert fixed.status_code == 200
    resubmitted = client.post(f"/v1/requests/{request_id}/submit", headers=headers)
    assert resubmitted.status_code == 202
    body = resubmitted.get_json()
    assert body["submitted_at"] == first["submitted_at"] and body["due_on"] == first["due_on"]
    assert body["facility"] == "tufts-mc"
    # The staff queue at another facility never shows it.
    lowell = sign_in(client, make_user(db, ["facility_staff"], ["lowell-general"]))
    assert client.get(f"/v1/requests/{request_id}", headers=lowell).status_code == 404


# --- versions, ETag and If-Match -------------------------------------------------------------------------------

def test_every_change_bumps_the_version_and_a_stale_if_match_changes_nothing(client, db, firm):
    headers = bearer(firm.api_key)
    created = client.post("/v1/requests", headers=headers, json=request_body())
    request_id, version = created.get_json()["id"], created.get_json()["version"]
    assert created.headers["ETag"] == f'"{version}"'
    got = client.get(f"/v1/requests/{request_id}", headers=headers)
    assert got.headers["ETag"] == f'"{version}"'
    changed = client.patch(f"/v1/requests/{request_id}", headers={**headers, "If-Match": f'"{version}"'},
                           json={"instructions": "Please include imaging reports"})
    assert changed.status_code == 200 and changed.get_json()["version"] == version + 1
    assert changed.headers["ETag"] == f'"{version + 1}"'
    stale = client.patch(f"/v1/requests/{request_id}", headers={**headers, "If-Match": f'"{version}"'},
                         json={"instructions": "Overwritten?"})
    assert stale.status_code == 412 and stale.get_json()["code"] == "PRECONDITION_FAILED"
    after = client.get(f"/v1/requests/{request_id}", headers=headers).get_json()
    assert after["instructions"] == "Please include imaging reports" and after["version"] == version + 1
    for path in ("submit", "cancel"):
        late = client.post(f"/v1/requests/{request_id}/{path}", headers={**headers, "If-Match": '"1"'})
        assert late.status_code == 412, path
    uploaded = client.post(f"/v1/requests/{request_id}/documents", headers=headers, content_type="multipart/form-data",
                           data={"kind": "authorization", "file": (io.BytesIO(samples.minimal_pdf()), "a.pdf")})
    assert uploaded.status_code == 201
    assert client.get(f"/v1/requests/{request_id}", headers=headers).get_json()["version"] == version + 2
    wildcard = client.post(f"/v1/requests/{request_id}/cancel", headers={**headers, "If-Match": "*"})
    assert wildcard.status_code == 200 and wildcard.get_json()["version"] == version + 3


# --- claim, unclaim, assign ------------------------------------------------------------------------------------

def test_claim_unclaim_and_assign_to_a_colleague_of_the_same_facility(client, db, settings, firm, clerk):
    request_id = submitted(client, firm, "tufts-mc")
    publish(db, settings)
    colleague_email = make_user(db, ["facility_staff"], ["tufts-mc"])
    colleague = sign_in(client, colleague_email)
    outsider_email = make_user(db, ["facility_staff"], ["lowell-general"])
    from gateway.auth.models import User

    with db.transaction() as session:
        colleague_id = session.scalars(select(User.id).where(User.email == colleague_email)).one()
        outsider_id = session.scalars(select(User.id).where(User.email == outsider_email)).one()
    assert client.post(f"/v1/requests/{request_id}/claim", headers=clerk).status_code == 200
    taken = client.post(f"/v1/requests/{request_id}/claim", headers=colleague)
    assert taken.status_code == 409 and taken.get_json()["code"] == "INVALID_TRANSITION"
    unclaimed = move(client, clerk, request_id, "routed")
    assert unclaimed.get_json()["status"] == "routed" and unclaimed.get_json()["assigned_to"] is None
    assert unclaimed.get_json()["routing"]["queue"] == "facility.tufts-mc"
    wrong = client.post(f"/v1/requests/{request_id}/assign", headers=clerk, json={"user_id": outsider_id})
    assert wrong.status_code == 422
    handed = client.post(f"/v1/requests/{request_id}/assign", headers=clerk, json={"user_id": colleague_id})
    assert handed.status_code == 200, handed.get_json()
    assert handed.get_json()["status"] == "in_progress" and handed.get_json()["assigned_to"] == f"user:{colleague_id}"
    assert client.get(f"/v1/requests/{request_id}", headers=bearer(firm.api_key)).get_json()["assigned_to"] is None


def test_routing_rows_and_notifications_share_one_outbox(client, db, settings, firm):
    request_id = submitted(client, firm, "tufts-mc")
    with db.transaction() as session:
        kinds = sorted(m.kind for m in session.scalars(select(OutboxMessage).where(
            OutboxMessage.request_id == request_id)))
    assert kinds == ["notify", "route"]  # submitted's webhook event, and the routing work

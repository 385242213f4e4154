"""Issue 6's full walk: an insurer's system through submit, routing, return, resubmission and fulfilment,
with its webhook receiver seeing every status change, signed."""

from __future__ import annotations

import dataclasses
import io
import json
from datetime import timedelta

import requests as http
from sqlalchemy import select

from gateway.adapters import build_redis
from gateway.app import create_app
from gateway.db import utcnow
from gateway.routing import relay
from gateway.routing.dispatch import RqDispatcher
from gateway.webhooks.models import WebhookDelivery
from gateway.webhooks.service import claim_due, deliver
from gateway.webhooks.signing import verify
from tests import samples
from tests.factories import bearer, make_tenant, make_user, request_body, sign_in
from tests.routing.helpers import run_worker
from tests.routing.receiver import Receiver


def test_insurer_submits_staff_return_and_fulfil_requester_downloads(settings):
    walk_settings = dataclasses.replace(settings, webhook_allow_private=True)  # the receiver is on loopback
    app = create_app(walk_settings)
    client, db = app.test_client(), app.extensions["gateway"].db
    build_redis(settings).flushdb()
    receiver = Receiver()
    hook_id: list[str] = []
    insurer = make_tenant(db, "insurer")
    system = bearer(insurer.api_key)

    def publish_and_work():
        dispatcher = RqDispatcher(build_redis(settings))
        while relay.publish_due(db, dispatcher, batch=100).done:
            pass
        assert run_worker(walk_settings, "tufts-mc").returncode == 0

    def send_webhooks():
        # Status changes reach webhooks through the outbox: the relay fans them out, then they are sent.
        while relay.publish_due(db, RqDispatcher(build_redis(settings)), batch=100).done:
            pass
        with db.transaction() as session:
            due = claim_due(session, now=utcnow(), limit=1000, lease=timedelta(minutes=1))
            # Only this walk's deliveries: earlier tests of the session leave webhooks to hosts that never answer.
            ours = set(session.scalars(select(WebhookDelivery.id).where(WebhookDelivery.id.in_(due),
                                                                         WebhookDelivery.webhook_id == hook_id[0])))
        for delivery_id in due:
            if delivery_id in ours:
                assert deliver(db, delivery_id, settings=walk_settings) == "delivered"

    try:
        admin = sign_in(client, insurer.admin_email)
        hook = client.post("/v1/webhooks", headers=admin,
                           json={"url": receiver.url, "events": ["request.status_changed", "request.document_added"]})
        assert hook.status_code == 201, hook.get_json()
        secret = hook.get_json()["secret"]
        hook_id.append(hook.get_json()["id"])

        draft = client.post("/v1/requests", headers=system, json=request_body("tufts-mc")).get_json()
        request_id = draft["id"]
        upload = client.post(f"/v1/requests/{request_id}/documents", headers=system, content_type="multipart/form-data",
                             data={"kind": "authorization", "file": (io.BytesIO(samples.minimal_pdf()), "auth.pdf")})
        assert upload.status_code == 201
        assert client.post(f"/v1/requests/{request_id}/submit", headers=system).status_code == 202
        publish_and_work()
        assert client.get(f"/v1/requests/{request_id}", headers=system).get_json()["status"] == "routed"

        staff = sign_in(client, make_user(db, ["facility_staff"], ["tufts-mc"]))
        assert client.post(f"/v1/requests/{request_id}/claim", headers=staff).status_code == 200
        returned = client.post(f"/v1/requests/{request_id}/transitions", headers=staff,
                               json={"to": "returned", "reasons": ["INCOMPLETE"],
                                     "note": "Please include the second page of the authorization."})
        assert returned.status_code == 200
        seen = client.get(f"/v1/requests/{request_id}/events", headers=system).get_json()["items"]
        assert seen[-1]["status"] == "returned" and seen[-1]["detail"]["reasons"] == ["INCOMPLETE"]

        fix = client.post(f"/v1/requests/{request_id}/documents", headers=system, content_type="multipart/form-data",
                          data={"kind": "supporting", "file": (io.BytesIO(samples.minimal_pdf(pages=2)), "p2.pdf")})
        assert fix.status_code == 201
        assert client.post(f"/v1/requests/{request_id}/submit", headers=system).status_code == 202
        publish_and_work()
        assert client.post(f"/v1/requests/{request_id}/claim", headers=staff).status_code == 200
        released = samples.minimal_pdf(pages=4)
        release = client.post(f"/v1/requests/{request_id}/documents", headers=staff,
                              content_type="multipart/form-data",
                              data={"kind": "release", "file": (io.BytesIO(released), "records.pdf")})
        assert release.status_code == 201
        done = client.post(f"/v1/requests/{request_id}/transitions", headers=staff, json={"to": "fulfilled"})
        assert done.status_code == 200 and done.get_json()["status"] == "fulfilled"

        final = client.get(f"/v1/requests/{request_id}", headers=system).get_json()
        (release_doc,) = [d for d in final["documents"] if d["kind"] == "release"]
        content = client.get(f"/v1/requests/{request_id}/documents/{release_doc['id']}/content", headers=system)
        assert content.status_code == 302
        assert http.get(content.headers["Location"], timeout=10).content == released

        send_webhooks()
    finally:
        receiver.close()

    statuses, kinds = [], []
    for hit in receiver.hits:
        assert verify(secret, hit["headers"]["Gateway-Signature"], hit["body"])
        event = json.loads(hit["body"])
        assert set(event) == {"id", "type", "created_at", "data"} and event["data"]["request_id"] == request_id
        if event["type"] == "request.status_changed":
            statuses.append(event["data"]["status"])
        else:
            kinds.append(event["data"]["kind"])
    assert statuses == ["submitted", "routed", "in_progress", "returned", "submitted", "routed", "in_progress",
                        "fulfilled"]
    assert kinds == ["release"]
    assert "Silva" not in b"".join(hit["body"] for hit in receiver.hits).decode()
    with db.transaction() as session:
        from gateway.routing.models import JobEffect

        assert len(session.scalars(select(JobEffect).where(JobEffect.request_id == request_id)).all()) == 2
    db.dispose()

"""Issue 17's acceptance walk: a payer's system, with a real FHIR client library (fhirpy), against gunicorn.

It registers (the `gateway fhir-clients` command), gets a token with a signed
assertion, creates a CDex Task, polls it, sees it completed once records staff
release the records through the staff API, and downloads the output, whose
SHA-256 matches what staff uploaded.  Every FHIR answer is parsed by
fhir.resources' R4B models.
"""

from __future__ import annotations

import hashlib
import io

import pytest
import requests as http
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.task import Task
from fhirpy import SyncFHIRClient

from gateway.adapters import build_redis
from gateway.auth.models import Organization
from gateway.routing import relay
from gateway.routing.dispatch import RqDispatcher
from tests import samples
from tests.factories import make_tenant, make_user, sign_in
from tests.fhir.helpers import published_example, register, with_authorization
from tests.routing.helpers import run_worker

# One database (tests/conftest.py): FHIR translation onto service functions the API tests run on both databases.
pytestmark = pytest.mark.one_database


def test_a_payer_requests_polls_and_downloads_released_records(client, db, settings, live_gateway, tmp_path):
    build_redis(settings).flushdb()  # only this walk's jobs on the queues the worker drains
    tenant = make_tenant(db, "insurer")
    with db.transaction() as session:
        org_name = session.get(Organization, tenant.org_id).name
    payer = register(settings, tmp_path, tenant.org_id, alg="ES384")
    token_url = f"{live_gateway.url}/oauth/token"
    config = http.get(f"{live_gateway.url}/fhir/r4/.well-known/smart-configuration", timeout=10).json()
    assert config["token_endpoint"] == token_url
    granted = http.post(token_url, data=payer.form(token_url, scope="system/Task.crs system/AuditEvent.rs"),
                        timeout=10)
    assert granted.status_code == 200, granted.text
    fhir = SyncFHIRClient(f"{live_gateway.url}/fhir/r4", authorization=f"Bearer {granted.json()['access_token']}")

    body = with_authorization(published_example(), org_name)
    del body["id"]  # the server names new Tasks (fhirpy would PUT a Task that has an id)
    task = fhir.resource("Task", **body)
    task.save()
    created = Task.model_validate(task.serialize())
    assert created.status == "requested" and created.id

    found = fhir.resources("Task").search(identifier="http://example.org/payer|trackingid123").fetch()
    assert [Task.model_validate(t.serialize()).id for t in found] == [created.id]

    # Records staff work it through the staff API: routed by the relay and a worker, claimed, released.
    while relay.publish_due(db, RqDispatcher(build_redis(settings)), batch=100).done:
        pass
    assert run_worker(settings, "tufts-mc").returncode == 0
    staff = sign_in(client, make_user(db, ["facility_staff"], ["tufts-mc"]))
    assert client.post(f"/v1/requests/{created.id}/claim", headers=staff).status_code == 200
    polled = Task.model_validate(fhir.reference("Task", created.id).to_resource().serialize())
    assert polled.status == "in-progress" and not polled.output
    released = samples.minimal_pdf(pages=3)
    upload = client.post(f"/v1/requests/{created.id}/documents", headers=staff, content_type="multipart/form-data",
                         data={"kind": "release", "file": (io.BytesIO(released), "records.pdf")})
    assert upload.status_code == 201
    # Uploaded but not yet released: the payer sees no output.
    assert not Task.model_validate(fhir.reference("Task", created.id).to_resource().serialize()).output
    done = client.post(f"/v1/requests/{created.id}/transitions", headers=staff, json={"to": "fulfilled"})
    assert done.status_code == 200, done.get_json()

    raw = http.get(f"{live_gateway.url}/fhir/r4/Task?status=completed&_lastUpdated=ge2000-01-01T00:00:00Z",
                   headers={"Authorization": f"Bearer {granted.json()['access_token']}"}, timeout=10)
    assert raw.status_code == 200, raw.text
    bundle = Bundle.model_validate(raw.json())
    (entry,) = bundle.entry
    completed = entry.resource
    assert completed.id == created.id and completed.status == "completed"
    (output,) = [o for o in completed.output if o.valueReference.reference.startswith("#")]
    (disclosed,) = [o for o in completed.output if o.valueReference.reference.startswith("AuditEvent/")]
    reference = output.valueReference.reference.lstrip("#")
    (document,) = [r for r in completed.contained if r.id == reference]
    assert document.get_resource_type() == "DocumentReference"
    content = http.get(document.content[0].attachment.url, timeout=10).content
    assert hashlib.sha256(content).hexdigest() == hashlib.sha256(released).hexdigest()
    # The release itself, as an IHE BALP PrivacyDisclosure AuditEvent naming the document by its SHA-256.
    event = AuditEvent.model_validate(fhir.reference(*disclosed.valueReference.reference.split("/"))
                                      .to_resource().serialize())
    assert event.entity[0].what.reference == f"Task/{created.id}"
    assert event.entity[1].detail[0].valueString == hashlib.sha256(released).hexdigest()
    # Another organization's system sees neither the Task nor its disclosure.
    other = register(settings, tmp_path, make_tenant(db, "insurer").org_id)
    other_url = "http://localhost/oauth/token"
    token = client.post("/oauth/token", data=other.form(other_url, scope="system/Task.crs system/AuditEvent.rs"))
    headers = {"Authorization": f"Bearer {token.get_json()['access_token']}"}
    assert client.get(f"/fhir/r4/Task/{created.id}", headers=headers).status_code == 404
    assert client.get(f"/fhir/r4/{disclosed.valueReference.reference}", headers=headers).status_code == 404

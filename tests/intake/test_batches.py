"""Bulk submission over HTTP: POST /v1/batches, its job (in process and in a real RQ worker), GET /v1/batches/{id}."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from gateway.adapters import build_redis
from gateway.audit.models import AuditEvent
from gateway.audit.service import verify_chain
from gateway.batches import service
from gateway.batches.models import Batch
from gateway.intake.models import RecordsRequest
from tests.factories import bearer, make_tenant, request_body, unique
from tests.routing.helpers import run_worker


@pytest.fixture(scope="module")
def firm(db):
    return make_tenant(db, "law_firm")


def send(client, tenant, items, **headers):
    return client.post("/v1/batches", json={"requests": items}, headers={**bearer(tenant.api_key), **headers})


def run_job(settings, db, batch_id, **kwargs):
    """What the RQ job does, in this process."""
    return service.process(db, batch_id=batch_id, secret_key=settings.secret_key, **kwargs)


def fetch(client, tenant, batch_id):
    response = client.get(f"/v1/batches/{batch_id}", headers=bearer(tenant.api_key))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def requests_with(db, org_id, reference) -> int:
    with db.transaction() as session:
        return session.scalar(select(func.count()).select_from(RecordsRequest).where(
            RecordsRequest.org_id == org_id, RecordsRequest.reference == reference))


def test_valid_items_are_created_and_each_invalid_one_says_why(client, db, settings, firm):
    existing = request_body()
    assert client.post("/v1/requests", json=existing, headers=bearer(firm.api_key)).status_code == 201
    repeated = unique("REF")
    bad_date = request_body(authorization__signed_on="not a date")
    missing = request_body()
    del missing["patient"]["last_name"]
    items = [request_body(reference=repeated), bad_date, request_body(), missing,
             request_body(reference=repeated), request_body(reference=existing["reference"])]
    response = send(client, firm, items)
    assert response.status_code == 202, response.get_json()
    accepted = response.get_json()
    assert accepted["status"] == "processing" and accepted["total"] == 6 and accepted["items"] == []
    assert response.headers["Location"].endswith(f"/v1/batches/{accepted['id']}")

    run_job(settings, db, accepted["id"], chunk=4)  # two chunks
    batch = fetch(client, firm, accepted["id"])
    assert batch["status"] == "done" and batch["counts"] == {"created": 2, "rejected": 4}
    by_index = {item["index"]: item for item in batch["items"]}
    assert sorted(by_index) == list(range(6))
    assert by_index[0]["request_id"] and by_index[2]["request_id"] and by_index[0]["errors"] == []
    assert [(e["code"], e["field"]) for e in by_index[1]["errors"]] == [("INVALID_FIELD", "authorization.signed_on")]
    assert [(e["code"], e["field"]) for e in by_index[3]["errors"]] == [("FIELD_REQUIRED", "patient.last_name")]
    assert by_index[4]["errors"][0]["code"] == "DUPLICATE_REFERENCE" and "Item 0" in by_index[4]["errors"][0]["message"]
    assert [(e["code"], e["field"]) for e in by_index[5]["errors"]] == [("DUPLICATE_REFERENCE", "reference")]
    assert all(by_index[i]["request_id"] is None for i in (1, 3, 4, 5))
    assert set(by_index[1]["errors"][0]) == {"code", "field", "message", "rule"}

    # Each draft is exactly what POST /v1/requests makes: readable, a draft, its creation audited.
    draft = client.get(f"/v1/requests/{by_index[0]['request_id']}", headers=bearer(firm.api_key)).get_json()
    assert draft["status"] == "draft" and draft["reference"] == repeated
    with db.transaction() as session:
        actions = set(session.scalars(select(AuditEvent.action).where(
            AuditEvent.object_id.in_([accepted["id"], by_index[0]["request_id"]]))))
        row = session.get(Batch, accepted["id"])
        assert row.items_sealed is None  # the patient data it carried is gone once processed
        assert verify_chain(session).ok  # the items' audit entries, appended together, chain like any others
    assert {"batch.create", "request.create"} <= actions


def test_the_same_items_again_create_nothing_twice(client, db, settings, firm):
    items = [request_body() for _ in range(3)]
    first = send(client, firm, items).get_json()
    run_job(settings, db, first["id"])
    again = send(client, firm, items).get_json()
    run_job(settings, db, again["id"])
    assert fetch(client, firm, first["id"])["counts"] == {"created": 3, "rejected": 0}
    second = fetch(client, firm, again["id"])
    assert second["counts"] == {"created": 0, "rejected": 3}
    assert {e["code"] for item in second["items"] for e in item["errors"]} == {"DUPLICATE_REFERENCE"}
    assert all(requests_with(db, firm.org_id, item["reference"]) == 1 for item in items)


def test_one_reference_at_two_facilities_is_two_drafts_but_twice_at_one_is_a_duplicate(client, db, settings, firm):
    """References are unique per organization and facility (a group's requests share theirs), in batches too."""
    reference = unique("REF")
    items = [request_body(reference=reference, facility="tufts-mc"),
             request_body(reference=reference, facility="lowell-general"),
             request_body(reference=reference, facility="tufts-mc")]
    accepted = send(client, firm, items).get_json()
    run_job(settings, db, accepted["id"])
    batch = fetch(client, firm, accepted["id"])
    assert batch["counts"] == {"created": 2, "rejected": 1}
    by_index = {item["index"]: item for item in batch["items"]}
    assert by_index[0]["request_id"] and by_index[1]["request_id"]
    assert [e["code"] for e in by_index[2]["errors"]] == ["DUPLICATE_REFERENCE"]
    assert requests_with(db, firm.org_id, reference) == 2


def test_a_job_retried_after_a_crash_resumes_and_creates_each_item_once(client, db, settings, firm, monkeypatch):
    items = [request_body() for _ in range(5)]
    batch_id = send(client, firm, items).get_json()["id"]
    real, calls = service._create_chunk, {"n": 0}

    def crash_in_the_second_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("worker died")
        return real(*args, **kwargs)

    monkeypatch.setattr(service, "_create_chunk", crash_in_the_second_chunk)
    with pytest.raises(RuntimeError):
        run_job(settings, db, batch_id, chunk=2)
    assert fetch(client, firm, batch_id)["status"] == "processing"
    assert len(fetch(client, firm, batch_id)["items"]) == 2  # the first chunk committed, the second rolled back
    monkeypatch.setattr(service, "_create_chunk", real)
    run_job(settings, db, batch_id, chunk=2)
    assert run_job(settings, db, batch_id).skipped  # a third delivery of the job: nothing to do
    assert fetch(client, firm, batch_id)["counts"] == {"created": 5, "rejected": 0}
    assert all(requests_with(db, firm.org_id, item["reference"]) == 1 for item in items)


def test_a_run_with_a_time_budget_stops_after_a_chunk_and_the_next_run_finishes(client, db, settings, firm):
    batch_id = send(client, firm, [request_body() for _ in range(3)]).get_json()["id"]
    first = run_job(settings, db, batch_id, chunk=2, until=0.0)  # the budget is spent before it starts
    assert (first.created, fetch(client, firm, batch_id)["status"]) == (2, "processing")
    assert run_job(settings, db, batch_id, chunk=2).created == 1
    assert fetch(client, firm, batch_id)["counts"] == {"created": 3, "rejected": 0}


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"requests": []}, 400, "BATCH_EMPTY"),
    ({"requests": [{}] * 1001}, 413, "BATCH_TOO_LARGE"),
    ({}, 422, "VALIDATION_FAILED"),
    ({"requests": [{}, 7]}, 422, "VALIDATION_FAILED"),
    ({"requests": [{}], "extra": 1}, 422, "VALIDATION_FAILED"),
    ([], 400, "BODY_NOT_JSON"),
])
def test_a_batch_out_of_shape_is_refused_whole(client, firm, body, status, code):
    response = client.post("/v1/batches", json=body, headers=bearer(firm.api_key))
    assert (response.status_code, response.get_json()["code"]) == (status, code)
    assert response.mimetype == "application/problem+json"


def test_a_body_past_the_batch_cap_is_413(client, firm):
    huge = b'{"requests": [{"instructions": "' + b"x" * (9 * 1024 * 1024) + b'"}]}'
    response = client.post("/v1/batches", data=huge, content_type="application/json",
                           headers=bearer(firm.api_key))
    assert (response.status_code, response.get_json()["code"]) == (413, "BODY_TOO_LARGE")


def test_a_thousand_items_fit_the_body_cap(client, firm, db, settings):
    items = [request_body(reference=f"{unique('K')}-{i}", instructions="x" * 3000) for i in range(1000)]
    response = send(client, firm, items)
    assert response.status_code == 202, response.get_json()
    with db.transaction() as session:  # not processed here (the worker test runs a job); dropped unprocessed
        session.delete(session.get(Batch, response.get_json()["id"]))


def test_another_organization_gets_404(client, db, settings, firm):
    batch_id = send(client, firm, [request_body()]).get_json()["id"]
    other = make_tenant(db, "law_firm")
    response = client.get(f"/v1/batches/{batch_id}", headers=bearer(other.api_key))
    assert (response.status_code, response.get_json()["code"]) == (404, "NOT_FOUND")
    assert client.get("/v1/batches/no-such-batch", headers=bearer(firm.api_key)).status_code == 404
    with db.transaction() as session:
        denied = session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.object_id == batch_id, AuditEvent.action == "access.denied"))
    assert denied == 1


def test_a_real_worker_processes_the_batch(client, db, settings, firm):
    build_redis(settings).flushdb()  # only this batch's job is waiting
    items = [request_body() for _ in range(12)] + [request_body(patient__date_of_birth="1980-13-45")]
    batch_id = send(client, firm, items).get_json()["id"]
    result = run_worker(settings, burst=True, maintenance=True)
    assert result.returncode == 0, result.stderr[-2000:]
    batch = fetch(client, firm, batch_id)
    assert batch["status"] == "done" and batch["counts"] == {"created": 12, "rejected": 1}
    assert batch["items"][12]["errors"][0]["field"] == "patient.date_of_birth"

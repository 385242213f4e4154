"""A payer cancels its Task with a JSON Patch (`status` → `cancelled`): through the one lifecycle, guarded by
If-Match, refused for anything else a patch asks, 404 for another organization's Task.

On both databases: the cancel takes the request's lock."""

from __future__ import annotations

import copy

import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.task import Task
from sqlalchemy import select

from gateway.audit.models import AuditEvent
from gateway.intake.models import RecordsRequest, RequestEvent
from tests.fhir.helpers import post_task, published_example, signed_in_payer, with_authorization

FHIR = "application/fhir+json"
JSON_PATCH = "application/json-patch+json"
CANCEL = [{"op": "replace", "path": "/status", "value": "cancelled"},
          {"op": "add", "path": "/statusReason", "value": {"text": "Claim withdrawn by the member"}}]


@pytest.fixture
def payer(client, settings, db, tmp_path):
    return signed_in_payer(client, settings, db, tmp_path, scope="system/Task.crs system/Task.u")


def _accepted(client, payer, tracking: str = "cancel-1") -> Task:
    task = copy.deepcopy(with_authorization(published_example(), payer["org_name"]))
    task["identifier"][0]["value"] = tracking
    created = Task.model_validate(post_task(client, payer, task).get_json())
    assert created.status == "requested"
    return created


def _patch(client, payer, task_id: str, body, *, content_type: str = JSON_PATCH, headers: dict | None = None):
    return client.patch(f"/fhir/r4/Task/{task_id}", headers={**payer["headers"], **(headers or {})}, json=body,
                        content_type=content_type)


def _code(response) -> str:
    return OperationOutcome.model_validate(response.get_json()).issue[0].details.coding[0].code


def test_a_payer_cancels_its_task_with_a_reason_and_a_repeat_changes_nothing(client, db, payer):
    created = _accepted(client, payer)
    response = _patch(client, payer, created.id, CANCEL, headers={"If-Match": f'W/"{created.meta.versionId}"'})
    assert response.status_code == 200 and response.mimetype == FHIR, response.get_json()
    cancelled = Task.model_validate(response.get_json())
    assert cancelled.status == "cancelled"
    assert response.headers["ETag"] == f'W/"{cancelled.meta.versionId}"' != f'W/"{created.meta.versionId}"'
    read = Task.model_validate(client.get(f"/fhir/r4/Task/{created.id}", headers=payer["headers"]).get_json())
    assert read.status == "cancelled"
    with db.transaction() as session:
        assert session.get(RecordsRequest, created.id).status == "cancelled"
        event = session.scalars(select(RequestEvent).where(RequestEvent.request_id == created.id,
                                                           RequestEvent.status == "cancelled")).one()
        assert event.detail["note"] == "Claim withdrawn by the member"
        assert session.scalars(select(AuditEvent).where(AuditEvent.object_id == created.id,
                                                        AuditEvent.action == "request.cancelled")).one()

    again = _patch(client, payer, created.id, CANCEL[:1])
    assert again.status_code == 200
    assert Task.model_validate(again.get_json()).meta.versionId == cancelled.meta.versionId


def test_an_older_version_in_if_match_changes_nothing(client, db, payer):
    created = _accepted(client, payer)
    stale = int(created.meta.versionId) - 1
    response = _patch(client, payer, created.id, CANCEL, headers={"If-Match": f'W/"{stale}"'})
    assert response.status_code == 412 and _code(response) == "PRECONDITION_FAILED"
    with db.transaction() as session:
        assert session.get(RecordsRequest, created.id).status != "cancelled"


def test_a_rejected_task_cannot_be_cancelled(client, payer):
    rejected = Task.model_validate(post_task(client, payer, published_example()).get_json())
    assert rejected.status == "rejected"
    response = _patch(client, payer, rejected.id, CANCEL)
    assert response.status_code == 409 and _code(response) == "INVALID_TRANSITION"


def test_another_organizations_task_is_not_found(client, settings, db, tmp_path, payer):
    created = _accepted(client, payer)
    intruder = signed_in_payer(client, settings, db, tmp_path, scope="system/Task.crs system/Task.u")
    response = _patch(client, intruder, created.id, CANCEL)
    assert response.status_code == 404
    with db.transaction() as session:
        assert session.get(RecordsRequest, created.id).status != "cancelled"


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"status": "cancelled"}, 400, "FHIR_PATCH_INVALID"),
    ([], 400, "FHIR_PATCH_INVALID"),
    ([{"op": "replace", "path": "/status", "value": "completed"}], 422, "FHIR_PATCH_UNSUPPORTED"),
    ([{"op": "replace", "path": "/owner", "value": {}}, *CANCEL], 422, "FHIR_PATCH_UNSUPPORTED"),
    ([{"op": "remove", "path": "/status"}], 422, "FHIR_PATCH_UNSUPPORTED"),
    (CANCEL[1:], 422, "FHIR_PATCH_UNSUPPORTED"),
    ([CANCEL[0], {"op": "add", "path": "/statusReason", "value": {"text": "x" * 501}}], 422,
     "FHIR_PATCH_UNSUPPORTED"),
])
def test_a_patch_asking_anything_but_a_cancel_is_refused_whole(client, db, payer, body, status, code):
    created = _accepted(client, payer)
    response = _patch(client, payer, created.id, body)
    assert response.status_code == status and response.mimetype == FHIR
    assert _code(response) == code
    with db.transaction() as session:
        assert session.get(RecordsRequest, created.id).status != "cancelled"


def test_the_wrong_media_type_and_a_token_without_the_update_scope_are_refused(client, settings, db, tmp_path,
                                                                              payer):
    created = _accepted(client, payer)
    assert _patch(client, payer, created.id, CANCEL, content_type="text/plain").status_code == 415
    reader = signed_in_payer(client, settings, db, tmp_path)  # Task.crs only
    denied = _patch(client, reader, created.id, CANCEL)
    assert denied.status_code == 403
    assert client.get("/fhir/r4/metadata").get_json()["rest"][0]["resource"][0]["interaction"][2] == {
        "code": "patch"}

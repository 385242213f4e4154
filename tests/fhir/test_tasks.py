"""CDex Tasks in and out: the published example, authorization inputs, the rules' codes, tenancy, search."""

from __future__ import annotations

import copy

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.consent import Consent
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.task import Task
from sqlalchemy import select

from gateway.audit.models import AuditEvent
from gateway.intake.models import RecordsRequest
from tests import samples
from tests.factories import bearer, make_tenant
from tests.fhir.helpers import (
    STATEMENT_POLICY,
    post_task,
    published_example,
    register,
    signed_in_payer,
    with_authorization,
)

# One database (tests/conftest.py): FHIR translation onto service functions the API tests run on both databases.
pytestmark = pytest.mark.one_database

TOKEN_URL = "http://localhost/oauth/token"
FHIR = "application/fhir+json"


@pytest.fixture
def payer(client, settings, db, tmp_path):
    return signed_in_payer(client, settings, db, tmp_path)


def _post(client, payer, task):
    return post_task(client, payer, task)


def _codes(task: Task) -> set[str]:
    (outcome,) = [r for r in task.contained if r.get_resource_type() == "OperationOutcome"]
    return {i.details.coding[0].code for i in outcome.issue}


def test_the_published_example_is_rejected_for_want_of_an_authorization_then_accepted_with_one(client, db, payer):
    response = _post(client, payer, published_example())
    assert response.status_code == 201 and response.mimetype == FHIR, response.get_json()
    rejected = Task.model_validate(response.get_json())
    assert rejected.status == "rejected"
    assert "DOC_AUTHORIZATION_REQUIRED" in _codes(rejected)
    assert "DOC_AUTHORIZATION_REQUIRED" in {c.code for c in rejected.statusReason.coding}
    assert rejected.owner.identifier.value == "tufts-mc"

    accepted = _post(client, payer, with_authorization(published_example(), payer["org_name"]))
    assert accepted.status_code == 201, accepted.get_json()
    task = Task.model_validate(accepted.get_json())
    assert task.status == "requested" and task.statusReason is None and task.id != rejected.id
    assert task.identifier[0].value == "trackingid123"
    assert accepted.headers["Location"].endswith(f"/fhir/r4/Task/{task.id}/_history/{task.meta.versionId}")
    with db.transaction() as session:
        req = session.get(RecordsRequest, task.id)
        assert req.status == "submitted" and req.records["types"] == ["visit_notes"]
        assert req.authorization["recipient"] == payer["org_name"] and req.purpose == "insurance_claim"
        assert [d.kind for d in req.documents] == ["authorization"] and req.documents[0].scan_status == "clean"
        assert session.get(RecordsRequest, rejected.id).status == "cancelled"
    read = client.get(f"/fhir/r4/Task/{task.id}", headers=payer["headers"])
    assert read.status_code == 200 and Task.model_validate(read.get_json()).status == "requested"
    again = Task.model_validate(client.get(f"/fhir/r4/Task/{rejected.id}", headers=payer["headers"]).get_json())
    assert again.status == "rejected" and "DOC_AUTHORIZATION_REQUIRED" in _codes(again)


def test_a_deficient_authorization_is_rejected_with_the_rules_codes(client, payer):
    task = with_authorization(published_example(), payer["org_name"],
                              policy=[{"uri": STATEMENT_POLICY + "right_to_revoke"}],
                              organization=[{"display": "Some Other Hospital"}])
    response = _post(client, payer, task)
    assert response.status_code == 201
    rejected = Task.model_validate(response.get_json())
    assert rejected.status == "rejected"
    assert {"AUTH_MISSING_CONDITIONING_STATEMENT", "AUTH_MISSING_REDISCLOSURE_STATEMENT",
            "AUTH_DISCLOSER_MISMATCH"} <= _codes(rejected)
    assert "DOC_AUTHORIZATION_REQUIRED" not in _codes(rejected)


def test_malware_in_the_attachment_is_refused_and_nothing_remains(client, payer, db):
    task = with_authorization(published_example(), payer["org_name"], pdf=samples.eicar())
    response = _post(client, payer, task)
    assert response.status_code == 422 and response.mimetype == FHIR
    outcome = OperationOutcome.model_validate(response.get_json())
    assert outcome.issue[0].details.coding[0].code == "MALWARE_DETECTED"
    assert Bundle.model_validate(client.get("/fhir/r4/Task", headers=payer["headers"]).get_json()).total == 0


def test_structural_problems_are_operation_outcomes_naming_the_element(client, payer):
    task = published_example()
    del task["owner"]
    task["input"][0]["valueCodeableConcept"]["coding"][0]["code"] = "99999-9"
    response = _post(client, payer, task)
    assert response.status_code == 422
    outcome = OperationOutcome.model_validate(response.get_json())
    expressions = {e for i in outcome.issue for e in (i.expression or [])}
    assert {"Task.owner.identifier", "Task.input[0].valueCodeableConcept"} <= expressions
    draft = _post(client, payer, {**published_example(), "status": "draft"})
    assert draft.status_code == 422
    assert OperationOutcome.model_validate(draft.get_json()).issue[1].expression == ["Task.status"]
    invalid = _post(client, payer, {**published_example(), "authoredOn": "yesterday"})
    assert invalid.status_code == 422
    assert OperationOutcome.model_validate(invalid.get_json()).issue[0].details.coding[0].code == \
        "FHIR_RESOURCE_INVALID"
    assert client.post("/fhir/r4/Task", headers=payer["headers"], data="{", content_type=FHIR).status_code == 400


def test_another_organizations_client_gets_404_and_the_probe_is_audited(client, settings, db, tmp_path, payer):
    created = Task.model_validate(_post(client, payer, with_authorization(published_example(),
                                                                          payer["org_name"])).get_json())
    other = make_tenant(db, "insurer")
    intruder = register(settings, tmp_path, other.org_id)
    token = client.post("/oauth/token", data=intruder.form(TOKEN_URL)).get_json()["access_token"]
    response = client.get(f"/fhir/r4/Task/{created.id}", headers=bearer(token))
    assert response.status_code == 404
    assert OperationOutcome.model_validate(response.get_json()).issue[0].code == "not-found"
    search = Bundle.model_validate(client.get("/fhir/r4/Task", headers=bearer(token)).get_json())
    assert search.total == 0
    with db.transaction() as session:
        assert session.scalars(select(AuditEvent).where(
            AuditEvent.actor == f"fhir_client:{intruder.client_id}", AuditEvent.action == "access.denied",
            AuditEvent.object_id == created.id)).first() is not None


def test_search_by_identifier_status_and_last_updated(client, payer):
    first = Task.model_validate(_post(client, payer, published_example()).get_json())  # rejected
    second = copy.deepcopy(published_example())
    second["identifier"][0]["value"] = "tracking-2"
    accepted = Task.model_validate(_post(client, payer, with_authorization(second, payer["org_name"])).get_json())

    def search(query: str) -> list[str]:
        response = client.get(f"/fhir/r4/Task?{query}", headers=payer["headers"])
        assert response.status_code == 200, response.get_json()
        bundle = Bundle.model_validate(response.get_json())
        assert bundle.type == "searchset"
        return [entry.resource.id for entry in bundle.entry or []]

    assert set(search("")) == {first.id, accepted.id}
    assert search("status=rejected") == [first.id]
    assert search("status=requested") == [accepted.id]
    assert search("identifier=http://example.org/payer|tracking-2") == [accepted.id]
    assert search("identifier=other|tracking-2") == []
    stamp = first.meta.lastUpdated.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert accepted.id in search(f"_lastUpdated=ge{stamp}")
    assert search("_lastUpdated=lt2000-01-01T00:00:00Z") == []
    bad = client.get("/fhir/r4/Task?_lastUpdated=yesterday&name=Shaw", headers=payer["headers"])
    assert bad.status_code == 400 and len(OperationOutcome.model_validate(bad.get_json()).issue) == 3


def test_the_authorization_reads_back_as_a_consent(client, db, settings, tmp_path, payer):
    sent = with_authorization(published_example(), payer["org_name"])
    task = Task.model_validate(_post(client, payer, sent).get_json())
    (reference,) = [i.valueReference.reference for i in task.input if i.valueReference]
    assert reference == f"Consent/{task.id}"
    response = client.get(f"/fhir/r4/{reference}", headers=payer["headers"])
    assert response.status_code == 200 and response.mimetype == FHIR
    consent = Consent.model_validate(response.get_json())
    (original,) = [r for r in sent["contained"] if r["resourceType"] == "Consent"]
    assert str(consent.dateTime) == original["dateTime"]
    assert str(consent.provision.period.end) == original["provision"]["period"]["end"]
    assert consent.provision.actor[0].reference.display == payer["org_name"]
    assert consent.organization[0].display == original["organization"][0]["display"]
    assert sorted(p.uri for p in consent.policy) == sorted(p["uri"] for p in original["policy"])
    rejected = Task.model_validate(_post(client, payer, {**published_example(),
                                                         "identifier": [{"value": "no-auth"}]}).get_json())
    assert client.get(f"/fhir/r4/Consent/{rejected.id}", headers=payer["headers"]).status_code == 404
    other = make_tenant(db, "insurer")
    intruder = register(settings, tmp_path, other.org_id)
    scoped = intruder.form(TOKEN_URL, scope="system/Task.crs")
    token = client.post("/oauth/token", data=scoped).get_json()["access_token"]
    refused = client.get(f"/fhir/r4/{reference}", headers=bearer(token))  # the scope does not cover Consent
    assert refused.status_code == 403 and OperationOutcome.model_validate(refused.get_json()).issue[0].code == \
        "forbidden"
    token = client.post("/oauth/token", data=intruder.form(TOKEN_URL, scope="system/Consent.rs")).get_json()
    assert client.get(f"/fhir/r4/{reference}", headers=bearer(token["access_token"])).status_code == 404

"""Property: /validate never answers 5xx, and a request that validates clean submits clean."""

from __future__ import annotations

import io
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.intake.schemas import (
    AUTHORITIES,
    DELIVERY_METHODS,
    PATHWAYS,
    PURPOSES,
    RECORD_TYPES,
    SENSITIVE,
    SPECIFIC_CONSENTS,
)
from tests import samples
from tests.factories import FACILITY_NAMES, bearer, make_tenant, unique

# Judged against the facilities' calendar: .ci/run repeats these with the machine in far time zones.
pytestmark = pytest.mark.date_sensitive

NAMES = ["Smith & Jones LLP", "smith and jones, l.l.p.", "Acme Insurance", "Tufts Medical Center", "", "Other Firm"]
dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2030, 12, 31)).map(str)
optional_dates = st.none() | dates
subset = lambda options: st.lists(st.sampled_from(options), unique=True, max_size=3)

authorizations = st.none() | st.fixed_dictionaries({
    "signed_by": st.sampled_from(["patient", "representative"]) | st.none(),
    "signer_name": st.sampled_from(["Ana Silva", "", "Guardian Person"]),
    "signed_on": optional_dates, "expires_on": optional_dates,
    "expiration_event": st.sampled_from([None, "end of litigation"]),
    "discloser": st.sampled_from([*FACILITY_NAMES.values(), "Tufts MC", "Somewhere Else", ""]),
    "recipient": st.sampled_from(NAMES),
    "information_description": st.sampled_from(["All records", ""]),
    "purpose_statement": st.sampled_from(["Litigation", "", "At the request of the individual"]),
    "statements": st.fixed_dictionaries({"right_to_revoke": st.booleans(), "no_conditioning": st.booleans(),
                                         "redisclosure": st.booleans()}),
    "representative": st.none() | st.fixed_dictionaries({
        "authority": st.sampled_from(AUTHORITIES) | st.none(), "description": st.sampled_from(["Proxy", ""])}),
    "specific_consents": subset(SPECIFIC_CONSENTS),
})

bodies = st.fixed_dictionaries({
    "facility": st.sampled_from([*FACILITY_NAMES, "atlantis-general"]),
    "practice": st.none() | st.fixed_dictionaries({"name": st.sampled_from(["Riverside Family Practice", ""])}),
    "pathway": st.sampled_from(PATHWAYS), "purpose": st.sampled_from(PURPOSES),
    "patient": st.fixed_dictionaries({"first_name": st.sampled_from(["Ana", "Zoë"]), "last_name": st.just("Silva"),
                                      "date_of_birth": dates, "deceased": st.booleans(), "minor": st.booleans()}),
    "records": st.fixed_dictionaries({"types": subset(RECORD_TYPES), "sensitive": subset(SENSITIVE),
                                      "date_from": optional_dates, "date_to": optional_dates}),
    "delivery": st.fixed_dictionaries({"method": st.sampled_from(DELIVERY_METHODS),
                                       "recipient": st.none() | st.fixed_dictionaries(
                                           {"name": st.sampled_from(NAMES)})}),
    "authorization": authorizations,
    "legal_process": st.none() | st.fixed_dictionaries({"return_date": optional_dates}),
    "public_benefit_claim": st.booleans(), "fee_waiver_requested": st.booleans(),
})


@pytest.fixture(scope="module")
def tenants(db):
    return {kind: make_tenant(db, kind) for kind in ("law_firm", "insurer", "provider")}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, kind=st.sampled_from(["law_firm", "insurer", "provider"]))
def test_validate_never_fails_and_clean_means_submittable(client, tenants, body, kind):
    tenant = tenants[kind]
    headers = bearer(tenant.api_key)
    body = {**body, "reference": unique("PROP")}
    validated = client.post("/v1/requests/validate", json=body, headers=headers)
    assert validated.status_code in (200, 422), validated.get_data(as_text=True)
    if validated.status_code != 200:
        return
    created = client.post("/v1/requests", json=body, headers=headers)
    assert created.status_code == 201, created.get_json()
    request_id = created.get_json()["id"]
    for required in created.get_json()["required_documents"]:
        uploaded = client.post(f"/v1/requests/{request_id}/documents", headers=headers,
                               data={"kind": required["kind"], "file": (io.BytesIO(samples.minimal_pdf()), "d.pdf")},
                               content_type="multipart/form-data")
        assert uploaded.status_code == 201, uploaded.get_json()
    live = client.get(f"/v1/requests/{request_id}", headers=headers).get_json()
    assert all(r["satisfied"] for r in live["required_documents"])
    submitted = client.post(f"/v1/requests/{request_id}/submit", headers=headers)
    if live["deficiencies"]:
        assert submitted.status_code == 422
        assert {e["code"] for e in submitted.get_json()["errors"]} == {d["code"] for d in live["deficiencies"]}
    else:
        assert submitted.status_code == 202, submitted.get_json()
        # What /validate said about the body alone differs only by the documents it could not see.
        no_docs = {d["code"] for d in validated.get_json()["deficiencies"]}
        assert all(code.startswith("DOC_") for code in no_docs)

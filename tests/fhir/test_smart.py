"""SMART Backend Services: the public documents, the token endpoint and its refusals (as Inferno checks them)."""

from __future__ import annotations

import pytest
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from sqlalchemy import select

from gateway.audit.models import AuditEvent
from tests.factories import bearer, make_tenant
from tests.fhir.helpers import new_key, register

# One database (tests/conftest.py): SMART Backend Services token exchange.
pytestmark = pytest.mark.one_database

TOKEN_URL = "http://localhost/oauth/token"


@pytest.fixture
def payer(settings, db, tmp_path):
    tenant = make_tenant(db, "insurer")
    return tenant, register(settings, tmp_path, tenant.org_id)


def test_capability_statement_and_smart_configuration_need_no_token(client):
    metadata = client.get("/fhir/r4/metadata")
    assert metadata.status_code == 200 and metadata.mimetype == "application/fhir+json"
    statement = CapabilityStatement.model_validate(metadata.get_json())
    assert statement.fhirVersion == "4.0.1"
    assert [r.type for r in statement.rest[0].resource] == ["Task", "Consent", "AuditEvent"]
    for path in ("/fhir/r4/.well-known/smart-configuration", "/.well-known/smart-configuration"):
        config = client.get(path).get_json()
        assert config["token_endpoint"] == TOKEN_URL
        assert config["token_endpoint_auth_signing_alg_values_supported"] == ["ES384", "RS384"]
        assert "client-confidential-asymmetric" in config["capabilities"]


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_a_signed_assertion_gets_a_short_lived_token_that_opens_fhir(client, settings, db, tmp_path, alg):
    tenant = make_tenant(db, "insurer")
    payer = register(settings, tmp_path, tenant.org_id, alg=alg)
    response = client.post("/oauth/token", data=payer.form(TOKEN_URL))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "bearer" and 0 < body["expires_in"] <= 300 and body["scope"] == "system/Task.crs"
    search = client.get("/fhir/r4/Task", headers=bearer(body["access_token"]))
    assert search.status_code == 200 and search.get_json()["type"] == "searchset"
    in_url = client.get(f"/fhir/r4/Task?access_token={body['access_token']}", headers=bearer(body["access_token"]))
    assert in_url.status_code == 401
    with db.transaction() as session:
        actions = session.scalars(select(AuditEvent.action).where(AuditEvent.actor == f"fhir_client:{payer.client_id}"))
        assert {"fhir.token", "fhir.task.search"} <= set(actions)


def test_other_credentials_do_not_open_fhir_and_errors_are_operation_outcomes(client, db):
    tenant = make_tenant(db, "insurer")
    for headers in ({}, bearer(tenant.api_key), bearer("fhirat_not-a-token")):
        response = client.get("/fhir/r4/Task", headers=headers)
        assert response.status_code == 401 and response.mimetype == "application/fhir+json"
        outcome = OperationOutcome.model_validate(response.get_json())
        assert outcome.issue[0].code == "login"
    missing = client.get("/fhir/r4/Patient/1")
    assert missing.status_code == 404 and OperationOutcome.model_validate(missing.get_json())


def _error(response, status: int, error: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"] == error and body["error_description"]


def test_smart_negatives_are_oauth_errors_never_5xx(client, payer):
    _tenant, payer = payer
    _error(client.post("/oauth/token", data=payer.form(TOKEN_URL, grant_type="authorization_code")), 400,
           "unsupported_grant_type")
    _error(client.post("/oauth/token", data=payer.form(TOKEN_URL, client_assertion_type="urn:wrong")), 400,
           "invalid_request")
    stranger = new_key("RS384")  # signed by a key the client never registered
    _error(client.post("/oauth/token", data=payer.form(
        TOKEN_URL, client_assertion=payer.assertion(TOKEN_URL, key=stranger))), 401, "invalid_client")
    _error(client.post("/oauth/token", data=payer.form(
        TOKEN_URL, client_assertion=payer.assertion(TOKEN_URL, aud="https://elsewhere.example/token"))), 400,
           "invalid_grant")
    _error(client.post("/oauth/token", data=payer.form(
        TOKEN_URL, client_assertion=payer.assertion(TOKEN_URL, exp_in=-120))), 400, "invalid_grant")
    _error(client.post("/oauth/token", data=payer.form(
        TOKEN_URL, client_assertion=payer.assertion(TOKEN_URL, exp_in=900))), 400, "invalid_grant")
    _error(client.post("/oauth/token", data=payer.form(
        TOKEN_URL, client_assertion=payer.assertion(TOKEN_URL, alg="HS256", key="secret" * 8))), 401,
           "invalid_client")
    _error(client.post("/oauth/token", data=payer.form(TOKEN_URL, scope="patient/*.read")), 400, "invalid_scope")
    _error(client.post("/oauth/token", json={"grant_type": "client_credentials"}), 400, "invalid_request")
    replayed = payer.assertion(TOKEN_URL, jti="once-only")
    assert client.post("/oauth/token", data=payer.form(TOKEN_URL, client_assertion=replayed)).status_code == 200
    _error(client.post("/oauth/token", data=payer.form(TOKEN_URL, client_assertion=replayed)), 400, "invalid_grant")


def test_a_revoked_client_and_its_tokens_stop_at_once(client, settings, payer):
    from click.testing import CliRunner

    from gateway.cli import main
    from tests.fixtures.live import settings_environment

    _tenant, payer = payer
    token = client.post("/oauth/token", data=payer.form(TOKEN_URL)).get_json()["access_token"]
    result = CliRunner().invoke(main, ["fhir-clients", "revoke", payer.client_id, "--json"],
                                env=settings_environment(settings))
    assert result.exit_code == 0, result.output
    assert client.get("/fhir/r4/Task", headers=bearer(token)).status_code == 401
    _error(client.post("/oauth/token", data=payer.form(TOKEN_URL)), 401, "invalid_client")

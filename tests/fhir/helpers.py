"""A payer's side of the FHIR interface: keys, a registered client, signed assertions, Tasks."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import jwt
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.clock import utcnow
from gateway.fhir.translate import STATEMENT_POLICY, STATEMENTS
from tests import samples
from tests.factories import FACILITY_NAMES, facility_today
from tests.fixtures.live import settings_environment

FIXTURES = Path(__file__).parent / "fixtures"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def published_example() -> dict:
    """The CDex guide's claim attachment request, adapted to name tufts-mc as its owner."""
    return json.loads((FIXTURES / "cdex-claim-attachment-request-example-withsig.json").read_text())


@dataclass
class Payer:
    client_id: str
    key: object
    kid: str
    alg: str

    def assertion(self, token_url: str, *, aud: str | None = None, exp_in: int = 240, jti: str | None = None,
                  alg: str | None = None, key=None) -> str:
        now = utcnow()
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": aud or token_url,
                  "exp": int((now + timedelta(seconds=exp_in)).timestamp()), "jti": jti or uuid.uuid4().hex}
        return jwt.encode(claims, key or self.key, algorithm=alg or self.alg, headers={"kid": self.kid})

    def form(self, token_url: str, **changes) -> dict:
        form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self.assertion(token_url), "scope": "system/Task.crs"}
        form.update(changes)
        return form


def new_key(alg: str = "RS384"):
    return rsa.generate_private_key(public_exponent=65537, key_size=2048) if alg == "RS384" else \
        ec.generate_private_key(ec.SECP384R1())


def public_jwk(key, kid: str, alg: str) -> dict:
    algorithm = jwt.algorithms.RSAAlgorithm if alg == "RS384" else jwt.algorithms.ECAlgorithm
    jwk = json.loads(algorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


def register(settings, tmp_path, org_id: str, alg: str = "RS384") -> Payer:
    """`gateway fhir-clients create --org ORG --jwks-file F` as an operator runs it."""
    from gateway.cli import fhir, main  # noqa: F401 (fhir registers the fhir-clients commands)

    key, kid = new_key(alg), uuid.uuid4().hex[:8]
    path = tmp_path / f"jwks-{kid}.json"
    path.write_text(json.dumps({"keys": [public_jwk(key, kid, alg)]}))
    result = CliRunner().invoke(main, ["fhir-clients", "create", "--org", org_id, "--jwks-file", str(path), "--json"],
                                env=settings_environment(settings))
    assert result.exit_code == 0, result.output
    return Payer(json.loads(result.stdout)["client_id"], key, kid, alg)


def consent(org_name: str, facility: str = "tufts-mc", **changes) -> dict:
    """A release-of-information Consent with every field the rules ask for (as of the facilities' today)."""
    today = facility_today()
    resource = {
        "resourceType": "Consent", "id": "authorization", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "64292-6"}]}],
        "patient": {"reference": "#patient"},
        "dateTime": str(today - timedelta(days=10)),
        "performer": [{"reference": "#patient"}],
        "organization": [{"display": FACILITY_NAMES[facility]}],
        "policy": [{"uri": STATEMENT_POLICY + name} for name in STATEMENTS],
        "provision": {
            "type": "permit", "period": {"start": str(today - timedelta(days=10)),
                                         "end": str(today + timedelta(days=170))},
            "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                            "code": "PRCP"}]}, "reference": {"display": org_name}}],
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "CLMATTCH",
                         "display": "Claim attachment"}],
            "code": [{"text": "History and physical notes for the claim of 2022-06-13"}],
        },
    }
    resource.update(changes)
    return resource


def with_authorization(task: dict, org_name: str, pdf: bytes | None = None, **consent_changes) -> dict:
    """The task with the authorization inputs of API.md: the signed PDF and a contained Consent."""
    task = copy.deepcopy(task)
    task["contained"].append(consent(org_name, **consent_changes))
    kind = {"coding": [{"system": "http://loinc.org", "code": "64292-6"}]}
    task["input"] += [
        {"type": kind, "valueAttachment": {"contentType": "application/pdf",
                                           "data": base64.b64encode(pdf or samples.minimal_pdf()).decode()}},
        {"type": kind, "valueReference": {"reference": "#authorization"}},
    ]
    return task


def signed_in_payer(client, settings, db, tmp_path, scope: str = "system/Task.crs system/Consent.rs") -> dict:
    """A new insurer with a registered FHIR client and a token for `scope` (Tasks and Consents)."""
    from gateway.auth.models import Organization
    from tests.factories import bearer, make_tenant

    tenant = make_tenant(db, "insurer")
    registered = register(settings, tmp_path, tenant.org_id)
    form = registered.form("http://localhost/oauth/token", scope=scope)
    token = client.post("/oauth/token", data=form).get_json()["access_token"]
    with db.transaction() as session:
        name = session.get(Organization, tenant.org_id).name
    return {"tenant": tenant, "headers": bearer(token), "org_name": name, "client_id": registered.client_id}


def post_task(client, payer: dict, task: dict):
    """POST a Task as `payer` (application/fhir+json)."""
    return client.post("/fhir/r4/Task", headers=payer["headers"], json=task, content_type="application/fhir+json")

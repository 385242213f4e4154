"""Every bad credential gets the same 401 body and status, whatever the reason (RFC 8725 checks included)."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from gateway.auth.api_keys import revoke_api_key
from gateway.auth.models import ApiKey
from gateway.auth.tokens import TokenService
from gateway.db import utcnow
from tests.factories import bearer, make_tenant


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unsigned(header: dict, claims: dict, signature: bytes = b"") -> str:
    return ".".join([_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()), _b64(signature)])


@pytest.fixture(scope="module")
def tenant(db):
    return make_tenant(db)


@pytest.fixture(scope="module")
def good(tokens, tenant):
    """A valid token for the tenant's admin."""
    issued = tokens.issue(subject=tenant.admin_id, org_id=tenant.org_id, roles=["requester_admin"], facilities=[])
    return issued.access_token


def _hs256(header: dict, claims: dict, secret: bytes) -> str:
    """An HS256 token signed by hand: the key-confusion attack libraries refuse to help with."""
    import hashlib
    import hmac

    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _header(token: str) -> dict:
    return jwt.get_unverified_header(token)


def _service(settings, db, **overrides) -> TokenService:
    kwargs = {"issuer": settings.jwt_issuer, "audience": settings.jwt_audience, "ttl": settings.access_token_ttl,
              "secret_key": settings.secret_key}
    kwargs.update(overrides)
    return TokenService(db, **kwargs)


def bad_tokens(settings, db, tokens, good, tenant) -> dict[str, str]:
    """Name → credential, each of which must be refused."""
    claims, header = _claims(good), _header(good)
    kid = header["kid"]
    public_jwk = next(k for k in tokens.jwks()["keys"] if k["kid"] == kid)
    public_raw = base64.urlsafe_b64decode(public_jwk["x"] + "==")
    attacker = ed25519.Ed25519PrivateKey.generate()
    attacker_jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(attacker.public_key()))
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    sub = tenant.admin_id

    def signed(payload, **headers):
        return jwt.encode(payload, attacker, algorithm="EdDSA", headers={"kid": kid, "typ": "at+jwt", **headers})

    tampered_parts = good.split(".")
    tampered_parts[1] = _b64(json.dumps({**claims, "roles": ["gateway_admin"]}).encode())
    return {
        "alg none": _unsigned({"alg": "none", "typ": "at+jwt", "kid": kid}, claims),
        "alg none without typ": _unsigned({"alg": "none", "kid": kid}, claims),
        "HS256 with our public key as secret": _hs256({"alg": "HS256", "typ": "at+jwt", "kid": kid}, claims,
                                                      public_raw),
        "HS256 with the public JWK text as secret": _hs256({"alg": "HS256", "typ": "at+jwt", "kid": kid}, claims,
                                                           json.dumps(public_jwk).encode()),
        "RS256 from another key": jwt.encode(claims, rsa_key, algorithm="RS256", headers={"kid": kid, "typ": "at+jwt"}),
        "expired": _service(settings, db, clock=lambda: time.time() - 3600).issue(
            subject=sub, org_id=tenant.org_id, roles=["requester_admin"], facilities=[]).access_token,
        "not yet valid": _service(settings, db, clock=lambda: time.time() + 3600).issue(
            subject=sub, org_id=tenant.org_id, roles=["requester_admin"], facilities=[]).access_token,
        "wrong aud": _service(settings, db, audience="another-api").issue(
            subject=sub, org_id=tenant.org_id, roles=["requester_admin"], facilities=[]).access_token,
        "wrong iss": _service(settings, db, issuer="https://evil.example").issue(
            subject=sub, org_id=tenant.org_id, roles=["requester_admin"], facilities=[]).access_token,
        "missing exp": signed({k: v for k, v in claims.items() if k != "exp"}),
        "unknown kid": jwt.encode(claims, attacker, algorithm="EdDSA", headers={"kid": "no-such-kid", "typ": "at+jwt"}),
        "kid with path characters": jwt.encode(claims, attacker, algorithm="EdDSA",
                                               headers={"kid": "../../../etc/passwd", "typ": "at+jwt"}),
        "kid with SQL characters": jwt.encode(claims, attacker, algorithm="EdDSA",
                                              headers={"kid": "x' OR '1'='1", "typ": "at+jwt"}),
        "jku header": signed(claims, jku="https://evil.example/jwks.json"),
        "embedded jwk header": jwt.encode(claims, attacker, algorithm="EdDSA",
                                          headers={"kid": kid, "typ": "at+jwt", "jwk": attacker_jwk}),
        "tampered payload": ".".join(tampered_parts),
        "signed by an attacker key with our kid": signed({**claims, "iat": now, "exp": now + 300}),
        "garbage": "not-a-token",
        "API key unknown": "rgw_aaaaaaaaaaaaaaaa_" + "A" * 40,
        "API key malformed": "rgw_short_secret",
        "API key with a wrong secret": tenant.api_key[:-4] + "AAAA",
    }


def test_every_bad_credential_gets_one_identical_401(client, settings, db, tokens, good, tenant):
    assert client.get("/v1/me", headers=bearer(good)).status_code == 200
    cases = bad_tokens(settings, db, tokens, good, tenant)
    bodies = {}
    for name, credential in cases.items():
        response = client.get("/v1/me", headers=bearer(credential))
        assert response.status_code == 401, name
        body = response.get_json()
        body.pop("request_id")
        bodies[name] = (json.dumps(body, sort_keys=True), response.headers.get("WWW-Authenticate"))
    assert len(set(bodies.values())) == 1, bodies
    missing = client.get("/v1/me")
    body = missing.get_json()
    body.pop("request_id")
    assert (json.dumps(body, sort_keys=True), missing.headers.get("WWW-Authenticate")) == next(iter(bodies.values()))


def test_revoked_and_expired_api_keys_get_the_same_401(client, db):
    revoked, expired = make_tenant(db), make_tenant(db)
    assert client.get("/v1/me", headers=bearer(revoked.api_key)).status_code == 200
    with db.transaction() as session:
        revoke_api_key(session.get(ApiKey, revoked.api_key_id))
        session.get(ApiKey, expired.api_key_id).expires_at = utcnow()
    first = client.get("/v1/me", headers=bearer(revoked.api_key))
    second = client.get("/v1/me", headers=bearer(expired.api_key))
    assert first.status_code == second.status_code == 401
    strip = lambda r: {k: v for k, v in r.get_json().items() if k != "request_id"}
    assert strip(first) == strip(second)


@pytest.mark.parametrize("param", ["api_key", "access_token", "token", "key"])
def test_credential_in_query_string_is_refused(client, tenant, param):
    assert client.get(f"/v1/me?{param}={tenant.api_key}").status_code == 401
    # Even alongside a valid header: the URL has already leaked it into logs.
    assert client.get(f"/v1/me?{param}={tenant.api_key}", headers=bearer(tenant.api_key)).status_code == 401


def test_basic_and_other_schemes_are_refused(client, tenant):
    assert client.get("/v1/me", headers={"Authorization": f"Basic {tenant.api_key}"}).status_code == 401
    assert client.get("/v1/me", headers={"Authorization": tenant.api_key}).status_code == 401


def test_deactivated_user_token_stops_working_at_once(client, db, tokens):
    from gateway.auth.models import User

    tenant = make_tenant(db)
    token = tokens.issue(subject=tenant.requester_id, org_id=tenant.org_id, roles=["requester"], facilities=[])
    assert client.get("/v1/me", headers=bearer(token.access_token)).status_code == 200
    with db.transaction() as session:
        session.get(User, tenant.requester_id).active = False
    assert client.get("/v1/me", headers=bearer(token.access_token)).status_code == 401

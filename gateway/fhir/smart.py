"""SMART Backend Services: client registration, the token endpoint's client assertions, and access tokens.

A client proves itself with a `private_key_jwt` assertion (RFC 7523) signed by
a key of its registered JWKS.  Only RS384 and ES384 are accepted, and the
algorithm is pinned to the key's type before any signature check, so `none`,
HMAC-with-the-public-key and algorithm-confusion tricks never reach PyJWT.
`iss` and `sub` must both be the client id, `aud` this gateway's token URL,
`exp` at most five minutes ahead (by the gateway's clock), and `jti` is kept
in Redis until the assertion expires so it cannot be used twice.

Access tokens are opaque random strings, kept in Redis for five minutes under
an HMAC of the token (the token itself is never stored); each use re-reads
the client and its organization, so revoking either stops them at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass

import jwt
from redis.exceptions import RedisError
from sqlalchemy import select

from gateway.auth.models import Organization
from gateway.auth.principal import Principal
from gateway.clock import utcnow
from gateway.db import Database
from gateway.errors import ServiceUnavailable
from gateway.fhir.models import FhirClient

log = logging.getLogger("gateway.fhir.smart")

GRANT_TYPE = "client_credentials"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = {"RS384": "RSA", "ES384": "EC"}  # the algorithm each key type may sign with, and nothing else
ASSERTION_MAX_SECONDS = 300
CLOCK_SKEW_SECONDS = 30
TOKEN_SECONDS = 300
TOKEN_PREFIX = "fhirat_"
# SMART v2 scopes this server grants: Tasks created, read and searched; Tasks updated (only to cancel one: its
# own scope, so a client can ask for the others without it); the documents and consents they carry.
SCOPES = ("system/Task.crs", "system/Task.u", "system/DocumentReference.rs", "system/Consent.rs",
          "system/AuditEvent.rs")
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
MAX_ASSERTION_CHARS = 8192


class OAuthError(Exception):
    """An RFC 6749 error answer: `{"error", "error_description"}` with 400 or 401 (never a stack trace)."""

    def __init__(self, status: int, error: str, description: str):
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


def invalid_client(description: str) -> OAuthError:
    return OAuthError(401, "invalid_client", description)


def public_jwks(jwks) -> dict:
    """A registrable JWKS: RSA or P-384 EC public keys only (a private member is refused, not stripped)."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise ValueError("a JWKS is an object with a non-empty `keys` array")
    for key in jwks["keys"]:
        if not isinstance(key, dict) or key.get("kty") not in ("RSA", "EC"):
            raise ValueError("only RSA and EC keys are accepted")
        if {"d", "p", "q", "dp", "dq", "qi"} & set(key):
            raise ValueError("the JWKS holds a private key; register the public keys only")
        if key["kty"] == "EC" and key.get("crv") != "P-384":
            raise ValueError("EC keys must be on P-384 (ES384)")
        try:
            jwt.PyJWK(key, algorithm="RS384" if key["kty"] == "RSA" else "ES384")
        except jwt.PyJWTError as error:
            raise ValueError(f"a key cannot be read: {error}") from None
    return {"keys": jwks["keys"]}


def register_client(db: Database, *, org_id: str, jwks: dict | None = None, jwks_url: str | None = None,
                    name: str | None = None) -> FhirClient:
    """Register a client of an active organization (the `gateway fhir-clients create` command)."""
    with db.transaction() as session:
        org = session.get(Organization, org_id)
        if org is None or not org.active:
            raise ValueError("no active organization with this id")
        client = FhirClient(org_id=org_id, name=name, jwks=public_jwks(jwks) if jwks is not None else None,
                            jwks_url=jwks_url, jwks_fetched_at=utcnow() if jwks is not None and jwks_url else None,
                            scopes=list(SCOPES), created_at=utcnow())
        session.add(client)
        session.flush()
        from gateway.audit.service import record

        record(session, actor="cli", org_id=org_id, action="fhir_client.create", object_type="fhir_client",
               object_id=client.id)
        session.expunge(client)
        return client


def revoke_client(db: Database, client_id: str) -> bool:
    """Stop a client at once: its access tokens are refused from the next call."""
    with db.transaction() as session:
        client = session.get(FhirClient, client_id)
        if client is None or client.revoked_at is not None:
            return False
        client.revoked_at = utcnow()
        from gateway.audit.service import record

        record(session, actor="cli", org_id=client.org_id, action="fhir_client.revoke", object_type="fhir_client",
               object_id=client.id)
        return True


def granted_scopes(requested: str | None) -> list[str]:
    """The scopes to grant: all of ours when none are asked for, else those asked for that we have."""
    if not requested:
        return list(SCOPES)
    wanted = requested.split()
    granted = [scope for scope in wanted if scope in SCOPES]
    if not granted:
        raise OAuthError(400, "invalid_scope", "None of the requested scopes is available; see the SMART "
                         "configuration's scopes_supported.")
    return granted


def allows(scopes, resource: str, action: str) -> bool:
    """Does any granted scope allow `action` (one of c, r, u, d, s) on `resource`?"""
    for scope in scopes:
        context, _, rest = scope.partition("/")
        name, _, perms = rest.partition(".")
        if context == "system" and name in (resource, "*") and action in _V1.get(perms, perms):
            return True
    return False


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str


class Smart:
    """The token endpoint's checks and the access-token store (Redis), built per app."""

    def __init__(self, db: Database, redis, secret_key: str, jwks_loader=None):
        self._db, self._redis, self._secret = db, redis, secret_key
        self._jwks_loader = jwks_loader

    def _hash(self, kind: str, value: str) -> str:
        return hmac.new(self._secret.encode(), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()

    def issue(self, form, *, token_url: str) -> tuple[FhirClient, IssuedToken]:
        """Check a token request's form; an access token for its client, or OAuthError."""
        if form.get("grant_type") != GRANT_TYPE:
            raise OAuthError(400, "unsupported_grant_type", "Only grant_type=client_credentials is supported.")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise OAuthError(400, "invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}.")
        assertion = form.get("client_assertion") or ""
        if not assertion or len(assertion) > MAX_ASSERTION_CHARS:
            raise OAuthError(400, "invalid_request", "A client_assertion (a signed JWT) is required.")
        scopes = granted_scopes(form.get("scope"))
        client, claims = self._verify(assertion, token_url)
        self._remember_jti(client.id, claims)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = {"client_id": client.id, "org_id": client.org_id, "scopes": scopes}
        self._redis.set("fhir:at:" + self._hash("at", token), json.dumps(record), ex=TOKEN_SECONDS)
        return client, IssuedToken(token, TOKEN_SECONDS, " ".join(scopes))

    def _verify(self, assertion: str, token_url: str) -> tuple[FhirClient, dict]:
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise invalid_client("The client assertion is not a JWT.") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise invalid_client("The client assertion must be signed with RS384 or ES384.")
        client_id = unverified.get("iss")
        if not isinstance(client_id, str) or unverified.get("sub") != client_id:
            raise invalid_client("The assertion's iss and sub must both be the client id.")
        client = self._client(client_id)
        if client is None:
            raise invalid_client("Unknown client.")
        key = self._key_for(client, header.get("kid"), alg)
        try:
            claims = jwt.decode(assertion, key, algorithms=[alg], audience=token_url, issuer=client_id,
                                options={"require": ["iss", "sub", "aud", "exp", "jti"], "verify_exp": False,
                                         "verify_iat": False, "verify_nbf": False})
        except jwt.InvalidAudienceError:
            raise OAuthError(400, "invalid_grant", "The assertion's aud must be this server's token URL.") from None
        except jwt.MissingRequiredClaimError as error:
            raise OAuthError(400, "invalid_grant", f"The assertion lacks the `{error.claim}` claim.") from None
        except jwt.PyJWTError:
            raise invalid_client("The client assertion's signature does not verify with a registered key.") from None
        now = utcnow().timestamp()
        exp = claims["exp"]
        if not isinstance(exp, int | float) or exp <= now - CLOCK_SKEW_SECONDS:
            raise OAuthError(400, "invalid_grant", "The client assertion has expired.")
        if exp > now + ASSERTION_MAX_SECONDS + CLOCK_SKEW_SECONDS:
            raise OAuthError(400, "invalid_grant", "The assertion's exp may be at most 5 minutes ahead.")
        if not isinstance(claims["jti"], str) or not claims["jti"] or len(claims["jti"]) > 256:
            raise OAuthError(400, "invalid_grant", "The assertion's jti must be a non-empty string.")
        return client, claims

    def _client(self, client_id: str) -> FhirClient | None:
        with self._db.transaction() as session:
            client = session.scalars(select(FhirClient).where(FhirClient.id == client_id[:36])).one_or_none()
            if client is None or client.revoked_at is not None:
                return None
            org = session.get(Organization, client.org_id)
            if org is None or not org.active:
                return None
            session.expunge(client)
            return client

    def _key_for(self, client: FhirClient, kid, alg: str):
        jwks = client.jwks
        if client.jwks_url and self._jwks_loader is not None:
            jwks = self._jwks_loader(client)
        candidates = [k for k in (jwks or {}).get("keys", []) if k.get("kty") == ALGORITHMS[alg]
                      and (kid is None or k.get("kid") == kid)]
        if not candidates:
            raise invalid_client("No registered key of this client matches the assertion (kid and algorithm).")
        return jwt.PyJWK(candidates[0], algorithm=alg).key

    def _remember_jti(self, client_id: str, claims: dict) -> None:
        # Kept until the assertion could no longer be accepted anyway (its exp plus the allowed skew).
        ttl = max(1, int(claims["exp"] - utcnow().timestamp()) + CLOCK_SKEW_SECONDS + 1)
        fresh = self._redis.set("fhir:jti:" + self._hash("jti", f"{client_id}:{claims['jti']}"), "1", nx=True, ex=ttl)
        if not fresh:
            raise OAuthError(400, "invalid_grant", "This assertion's jti has been used already.")

    def principal(self, token: str) -> Principal | None:
        """The organization's principal for a live access token, or None."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        try:
            raw = self._redis.get("fhir:at:" + self._hash("at", token))
        except RedisError:
            raise ServiceUnavailable("The token store is unavailable; retry shortly.",
                                     code="AUTH_UNAVAILABLE") from None
        if raw is None:
            return None
        record = json.loads(raw)
        client = self._client(record["client_id"])
        if client is None:
            return None
        with self._db.transaction() as session:
            org = session.get(Organization, client.org_id)
            org_kind = org.kind if org else None
        return Principal(kind="fhir_client", id=client.id, org_id=client.org_id, org_kind=org_kind,
                         roles=frozenset({"requester"}), scopes=frozenset(record["scopes"]))

"""Hospital sign-on: the gateway as an OpenID Connect relying party of the hospital's identity provider.

The authorization code flow with PKCE (S256), through Authlib (its OAuth 2 client builds the authorization
URL and exchanges the code; its `CodeIDToken` checks the ID token's claims, on joserfc signatures).  What
this module adds is what a library leaves to the application:

- discovery from `<issuer>/.well-known/openid-configuration`, cached, refused unless the document names
  the configured issuer exactly (a provider cannot speak for another) and its endpoints are https;
- the ID token's algorithm pinned to asymmetric ones (as gateway.auth.oidc does for API tokens: an HS*
  token would turn the provider's *public* key, or our client secret, into a forgery key), its key from the
  provider's JWKS (refetched for an unknown `kid` at most every 30 s), and its times judged by the
  gateway's clock;
- the flow's secrets (state, nonce, code verifier) kept server-side in Redis, sealed with the secret key,
  for 10 minutes, and taken out exactly once: a replayed or forged callback finds nothing.

Nothing here logs a state, nonce, verifier, code or token.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from gateway import crypto
from gateway.auth.oidc import ASYMMETRIC_ALGORITHMS
from gateway.auth.tokens import LEEWAY
from gateway.settings import is_loopback_host

logger = logging.getLogger(__name__)

FLOW_SECONDS = 600
DISCOVERY_SECONDS = 3600
JWKS_SECONDS = 300
JWKS_REFETCH_COOLDOWN = 30.0
FAILURE_BACKOFF_SECONDS = 5.0
MAX_ID_TOKEN_BYTES = 16 * 1024
SCOPE = "openid email profile"
_FLOW_PURPOSE = "sso-flow"


class SsoRefused(Exception):
    """A sign-in through the provider cannot go on.  `code` is stable (shown on the page), `status` its HTTP
    status, `reason` the suffix of the audit action (`auth.sso.<reason>`), the message is for people."""

    def __init__(self, code: str, status: int, message: str, reason: str, user_id: str | None = None):
        super().__init__(message)
        self.code, self.status, self.reason, self.user_id = code, status, reason, user_id
        # Set once the refusal is in the audit trail (sign_on writes its own, with the user it concerns).
        self.audited = False


def unavailable(why: str) -> SsoRefused:
    """The provider cannot be used right now (discovery, keys or the flow store)."""
    logger.warning("hospital sign-on unavailable", extra={"why": why})
    return SsoRefused("SSO_UNAVAILABLE", 503, "Signing in with your hospital account is not possible right now. "
                      "Try again in a few minutes, or sign in with your email address and password.",
                      "unavailable")


@dataclass(frozen=True)
class Flow:
    """One sign-in in progress: the secrets the callback checks against."""

    state: str
    nonce: str
    verifier: str


def provider_url(url: object, *, production: bool) -> bool:
    """An endpoint the gateway may call: https, or http to loopback outside production."""
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    return (parts.scheme == "http" and not production and bool(parts.hostname)
            and is_loopback_host(parts.hostname))


class HospitalSso:
    """The configured provider: discovery, the authorization URL, the code exchange, the ID token."""

    def __init__(self, *, issuer: str, client_id: str, client_secret: str, redirect_uri: str,
                 token_auth_method: str = "client_secret_basic",  # noqa: S107  (a method's name, not a secret)
                 production: bool = True, timeout: float = 5.0):
        self.issuer, self.client_id, self.redirect_uri = issuer, client_id, redirect_uri
        self._client_secret = client_secret
        self.token_auth_method, self.production, self.timeout = token_auth_method, production, timeout
        # One HTTP session per process for discovery and keys (thread-safe for plain GETs).
        self._http = requests.Session()
        self._lock = threading.Lock()
        self._metadata: dict | None = None
        self._metadata_until = 0.0
        self._keys = None
        self._keys_until = 0.0
        self._keys_fetched_at = 0.0
        self._retry_at = 0.0

    def __repr__(self) -> str:
        return f"HospitalSso(issuer={self.issuer!r}, client_id={self.client_id!r})"

    @classmethod
    def from_settings(cls, settings) -> HospitalSso | None:
        """Built from settings, or None when hospital sign-on is not configured."""
        if not settings.sso_enabled:
            return None
        return cls(issuer=settings.sso_issuer, client_id=settings.sso_client_id,
                   client_secret=settings.sso_client_secret,
                   redirect_uri=settings.portal_url.rstrip("/") + "/portal/sso/callback",
                   token_auth_method=settings.sso_token_auth_method, production=settings.is_production)

    # -- discovery and keys -------------------------------------------------------------------------

    def metadata(self) -> dict:
        """The provider's discovery document (cached an hour); SsoRefused (503) when it cannot be used."""
        with self._lock:
            if self._metadata is not None and time.monotonic() < self._metadata_until:
                return self._metadata
            document = self._get_json(self.issuer.rstrip("/") + "/.well-known/openid-configuration")
            self._check_metadata(document)
            self._metadata, self._metadata_until = document, time.monotonic() + DISCOVERY_SECONDS
            return document

    def _check_metadata(self, document: dict) -> None:
        # OpenID Connect Discovery 1.0 §4.3: the issuer in the document is exactly the one configured.
        if document.get("issuer") != self.issuer:
            raise unavailable("issuer mismatch in discovery")
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not provider_url(document.get(name), production=self.production):
                raise unavailable(f"discovery {name} unusable")
        methods = document.get("code_challenge_methods_supported")
        if methods is not None and "S256" not in methods:
            raise unavailable("provider does not support PKCE S256")
        if not self.algorithms(document):
            raise unavailable("provider signs ID tokens with no asymmetric algorithm")

    @staticmethod
    def algorithms(document: dict) -> list[str]:
        """The ID token algorithms accepted: the provider's, less anything not asymmetric (RS256 by default)."""
        advertised = document.get("id_token_signing_alg_values_supported") or ["RS256"]
        return [alg for alg in advertised if isinstance(alg, str) and alg in ASYMMETRIC_ALGORITHMS]

    def _get_json(self, url: str) -> dict:
        if time.monotonic() < self._retry_at:
            raise unavailable("backing off after a failed fetch")
        try:
            response = self._http.get(url, timeout=self.timeout, allow_redirects=False)
            response.raise_for_status()
            document = response.json()
            if not isinstance(document, dict):
                raise ValueError("not a JSON object")
            return document
        except (requests.RequestException, ValueError) as error:
            self._retry_at = time.monotonic() + FAILURE_BACKOFF_SECONDS
            raise unavailable(type(error).__name__) from None

    def key_set(self, *, refresh: bool = False):
        """The provider's signing keys (joserfc KeySet), cached; `refresh` refetches at most every 30 s."""
        from joserfc.jwk import KeySet

        with self._lock:
            now = time.monotonic()
            stale = self._keys is None or now >= self._keys_until
            if refresh and now - self._keys_fetched_at >= JWKS_REFETCH_COOLDOWN:
                stale = True
            if stale:
                jwks_uri = (self._metadata or {}).get("jwks_uri")
                if jwks_uri is None:
                    raise unavailable("no discovery document")
                document = self._get_json(jwks_uri)
                try:
                    keys = KeySet.import_key_set(document)
                except Exception as error:  # any garbage in a key set: never a 500, never accepted
                    raise unavailable(f"JWKS unusable: {type(error).__name__}") from None
                self._keys, self._keys_until, self._keys_fetched_at = keys, now + JWKS_SECONDS, now
            return self._keys

    # -- the flow -----------------------------------------------------------------------------------

    def _oauth(self):
        """An Authlib OAuth 2 session for one sign-in: it keeps the tokens it fetched, which must not be
        shared between two people's sign-ins, so each gets its own."""
        from authlib.integrations.requests_client import OAuth2Session

        return OAuth2Session(client_id=self.client_id, client_secret=self._client_secret, scope=SCOPE,
                             redirect_uri=self.redirect_uri, code_challenge_method="S256",
                             token_endpoint_auth_method=self.token_auth_method, default_timeout=self.timeout)

    def begin(self) -> tuple[Flow, str]:
        """A new flow and the provider URL to send the browser to."""
        metadata = self.metadata()
        flow = Flow(state=secrets.token_urlsafe(32), nonce=secrets.token_urlsafe(32),
                    verifier=secrets.token_urlsafe(64))
        with self._oauth() as oauth:
            url, _state = oauth.create_authorization_url(metadata["authorization_endpoint"], state=flow.state,
                                                         code_verifier=flow.verifier, nonce=flow.nonce)
        return flow, url

    def finish(self, flow: Flow, *, code: str, now: int) -> dict:
        """Exchange the code (with the verifier) and return the validated ID token's claims.

        `now` is the gateway clock's Unix time.  SsoRefused for a failed exchange or an invalid token.
        """
        from authlib.integrations.base_client.errors import OAuthError

        metadata = self.metadata()
        try:
            with self._oauth() as oauth:
                token = oauth.fetch_token(metadata["token_endpoint"], grant_type="authorization_code", code=code,
                                          code_verifier=flow.verifier)
        except OAuthError as error:
            logger.info("hospital sign-on code exchange refused", extra={"error": str(error.error)[:64]})
            raise exchange_failed() from None
        except (requests.RequestException, ValueError) as error:
            logger.warning("hospital sign-on code exchange failed", extra={"error": type(error).__name__})
            raise exchange_failed() from None
        id_token = token.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise invalid_id_token("no id_token in the token response")
        return self.validate_id_token(id_token, nonce=flow.nonce, access_token=token.get("access_token"),
                                      now=now, algorithms=self.algorithms(metadata))

    def validate_id_token(self, id_token: str, *, nonce: str, access_token: str | None, now: int,
                          algorithms: list[str]) -> dict:
        """The claims of an ID token signed by the provider's key with a pinned algorithm, issued to us,
        for this flow's nonce, and current by the gateway's clock."""
        from authlib.oidc.core import CodeIDToken
        from joserfc import jwt
        from joserfc.errors import InvalidKeyIdError, JoseError
        from joserfc.jws import JWSRegistry

        if len(id_token) > MAX_ID_TOKEN_BYTES:
            raise invalid_id_token("too large")
        registry = JWSRegistry(algorithms=algorithms)
        try:
            try:
                decoded = jwt.decode(id_token, self.key_set(), algorithms=algorithms, registry=registry)
            except InvalidKeyIdError:
                decoded = jwt.decode(id_token, self.key_set(refresh=True), algorithms=algorithms, registry=registry)
            if decoded.header.get("alg") not in algorithms:
                raise invalid_id_token("algorithm")
            options = {"iss": {"essential": True, "value": self.issuer},
                       "aud": {"essential": True, "value": self.client_id},
                       "sub": {"essential": True}, "exp": {"essential": True}, "iat": {"essential": True},
                       "nonce": {"essential": True}}
            params = {"nonce": nonce, "client_id": self.client_id}
            if access_token:
                params["access_token"] = access_token
            claims = CodeIDToken(decoded.claims, decoded.header, options, params)
            claims.validate(now=now, leeway=LEEWAY)  # exp, iat (not in the future), nbf, iss, aud, azp, nonce
        except SsoRefused:
            raise
        except (JoseError, ValueError, TypeError, KeyError) as error:
            raise invalid_id_token(type(error).__name__) from None
        if not isinstance(claims.get("sub"), str) or not claims["sub"] or len(claims["sub"]) > 255:
            raise invalid_id_token("sub")
        return dict(claims)


def exchange_failed() -> SsoRefused:
    """The provider would not exchange the code (expired, used, or not ours)."""
    return SsoRefused("SSO_EXCHANGE_FAILED", 502, "Your hospital's sign-in service did not confirm this sign-in. "
                      "Please start again.", "exchange_failed")


def invalid_id_token(why: str) -> SsoRefused:
    """The ID token failed a check (the reason goes to the log, never to the page)."""
    logger.warning("hospital sign-on ID token refused", extra={"why": why[:64]})
    return SsoRefused("SSO_ID_TOKEN_INVALID", 401, "Your hospital's sign-in service sent an answer the portal "
                      "cannot trust. Please start again.", "id_token_invalid")


class FlowStore:
    """Flows in progress, in Redis under a hash of their state, sealed, for 10 minutes, taken out once."""

    def __init__(self, redis, secret_key: str):
        self._redis, self._secret_key = redis, secret_key

    @staticmethod
    def _key(state: str) -> str:
        return "sso:flow:" + hashlib.sha256(state.encode()).hexdigest()

    def put(self, flow: Flow) -> None:
        """Keep a new flow until its callback (or 10 minutes)."""
        secrets_ = json.dumps({"nonce": flow.nonce, "verifier": flow.verifier})
        sealed = crypto.seal(self._secret_key, secrets_, purpose=_FLOW_PURPOSE)
        try:
            self._redis.set(self._key(flow.state), sealed, ex=FLOW_SECONDS)
        except Exception as error:  # Redis down: no sign-in can start, say so
            raise unavailable(f"flow store: {type(error).__name__}") from None

    def take(self, state: str) -> Flow | None:
        """The flow of this state, removed in the same step (GET and DEL in one transaction); None if
        there is none (never started, expired, or already used)."""
        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.get(self._key(state))
            pipe.delete(self._key(state))
            sealed, _deleted = pipe.execute()
        except Exception as error:
            raise unavailable(f"flow store: {type(error).__name__}") from None
        if sealed is None:
            return None
        try:
            data = json.loads(crypto.unseal(self._secret_key, sealed.decode() if isinstance(sealed, bytes)
                                            else sealed, purpose=_FLOW_PURPOSE))
        except ValueError:
            return None
        return Flow(state=state, nonce=data["nonce"], verifier=data["verifier"])

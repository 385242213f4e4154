"""Access tokens from an external OpenID Connect identity provider, checked against its JWKS."""

from __future__ import annotations

import ipaddress
import logging
import time
from urllib.parse import urlparse

import jwt

from gateway.auth.tokens import LEEWAY, InvalidToken, check_header, parse_header

logger = logging.getLogger(__name__)

# Only asymmetric algorithms: an HS* entry would let the IdP's *public* key act as an HMAC secret.
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                                   "ES256", "ES384", "ES512", "EdDSA"})
# Identity providers put large group lists into access tokens; still bounded.
MAX_OIDC_TOKEN_BYTES = 16 * 1024
# typ values an access token may carry (RFC 9068, or the generic JWT); anything else
# (an ID-token-like "dpop+jwt", "logout+jwt", ...) is a different kind of JWT.
_ACCESS_TOKEN_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})
_REQUIRED_CLAIMS = ["exp", "iat", "sub", "aud", "iss"]
# After a failed JWKS fetch, refuse at once for this long instead of making every
# request wait out another timeout against a provider that is down.
FAILURE_BACKOFF_SECONDS = 5.0


class OidcVerifier:
    """Accepts tokens from an external identity provider when its issuer, audience and JWKS URL are configured."""

    def __init__(self, *, issuer: str, audience: str, jwks_url: str,
                 algorithms: tuple[str, ...] = ("RS256", "ES256"), timeout: float = 3.0,
                 cache_seconds: int = 300):
        if not issuer or not audience:
            raise ValueError("OIDC issuer and audience are both required")
        algorithms = tuple(algorithms)
        if not algorithms or not set(algorithms) <= ASYMMETRIC_ALGORITHMS:
            raise ValueError(f"OIDC algorithms must be a non-empty subset of {sorted(ASYMMETRIC_ALGORITHMS)}")
        _check_jwks_url(jwks_url)
        self.issuer = issuer
        self.audience = audience
        self.algorithms = algorithms
        # cache_keys stays off: pyjwt's per-kid cache never expires, so a key the IdP
        # withdrew would be trusted until restart.  The JWK Set cache (lifespan) expires,
        # and pyjwt refetches for an unknown kid at most once per cooldown (30 s).
        self._client = jwt.PyJWKClient(jwks_url, cache_keys=False, lifespan=cache_seconds, timeout=timeout)
        self._retry_at = 0.0

    def __repr__(self) -> str:
        return f"OidcVerifier(issuer={self.issuer!r}, audience={self.audience!r})"

    @classmethod
    def from_settings(cls, settings) -> OidcVerifier | None:
        """Build from settings, or None when no identity provider is configured."""
        if not settings.oidc_issuer:
            return None
        if not settings.oidc_audience:
            # Without an audience any token the IdP issued for any application would pass.
            raise ValueError("GATEWAY_OIDC_AUDIENCE is required when GATEWAY_OIDC_ISSUER is set")
        return cls(issuer=settings.oidc_issuer, audience=settings.oidc_audience,
                   jwks_url=settings.oidc_jwks_url)

    def verify(self, token: str) -> dict:
        """The claims of a valid token from the identity provider; InvalidToken for anything else."""
        header = parse_header(token, max_bytes=MAX_OIDC_TOKEN_BYTES)
        kid = check_header(header, algorithms=self.algorithms, typ=None)
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in _ACCESS_TOKEN_TYPES):
            raise InvalidToken("typ")
        key = self._signing_key(kid)
        try:
            return jwt.decode(token, key, algorithms=list(self.algorithms), audience=self.audience,
                              issuer=self.issuer, leeway=LEEWAY,
                              options={"require": _REQUIRED_CLAIMS, "strict_aud": False})
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError, RecursionError) as exc:
            raise InvalidToken("rejected", f"{type(exc).__name__}: {exc}") from None

    def _signing_key(self, kid: str) -> jwt.PyJWK:
        if time.monotonic() < self._retry_at:
            raise InvalidToken("jwks_unavailable", "backing off after a failed fetch")
        try:
            return self._client.get_signing_key(kid)
        except jwt.PyJWKClientConnectionError as exc:
            error = exc
        except jwt.PyJWKClientError as exc:
            # pyjwt uses this one class for "no such kid" and for an unusable key set;
            # anything but the former is the provider's fault and worth a warning.
            if "Unable to find a signing key" in str(exc):
                raise InvalidToken("unknown_kid") from None
            error = exc
        except Exception as exc:
            # Garbage from the endpoint (not JSON, not a key set, odd transport errors):
            # never a reason to accept, never a 500.
            error = exc
        self._retry_at = time.monotonic() + FAILURE_BACKOFF_SECONDS
        logger.warning("OIDC JWKS unusable", extra={"error": type(error).__name__})
        raise InvalidToken("jwks_unavailable", type(error).__name__)


def _check_jwks_url(url: str) -> None:
    """Refuse JWKS URLs an attacker on the network could answer: https, or http to loopback only."""
    parsed = urlparse(url or "")
    if parsed.scheme == "https" and parsed.hostname:
        return
    if parsed.scheme == "http" and parsed.hostname:
        host = parsed.hostname
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if loopback:
            return
    raise ValueError("the OIDC JWKS URL must be https (http only to a loopback address)")

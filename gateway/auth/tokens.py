"""The gateway's own portal access tokens: EdDSA (Ed25519) JWTs in the RFC 9068 shape.

Signing keys live in the `signing_keys` table with the private half encrypted by
the gateway secret key, so a database dump alone cannot mint tokens.  Every
process caches the keys; a token naming a kid it has not seen makes it re-read
the table (throttled), which is how a `rotate` run by the CLI reaches every
gunicorn worker.  Headers are checked (RFC 8725) before any key is looked up.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import secrets
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import IntegrityError

from gateway.auth.models import SigningKey
from gateway.db import Database

logger = logging.getLogger(__name__)

ALGORITHM = "EdDSA"
TOKEN_TYPE = "at+jwt"
# Clock skew tolerated between gateway processes and hosts, for exp/nbf/iat and
# for how long a retired key keeps verifying after its retirement.
LEEWAY = 30
MAX_TOKEN_BYTES = 8 * 1024
# An unknown kid re-reads the keys at most this often: a flood of random kids
# must not turn into a flood of queries.
RELOAD_MIN_INTERVAL = 2.0
# Cached keys are re-read at least this often, so a rotation, a pruned or a
# deleted key reaches every process.  It must stay below LEEWAY: a process that
# has not noticed a rotation keeps signing with the retired key for up to this
# long, and those tokens must still fall inside the retired key's grace period.
KEY_CACHE_SECONDS = 15.0
FORBIDDEN_HEADERS = frozenset({"jku", "jwk", "x5u", "x5c", "crit", "b64"})
_KID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_REQUIRED_CLAIMS = ["exp", "iat", "nbf", "sub", "aud", "iss", "jti"]
# Serializes key creation across processes on PostgreSQL (any constant bigint).
_PG_LOCK_ID = zlib.crc32(b"gateway.signing_keys")


class InvalidToken(Exception):
    """Any reason a credential is refused; `reason` is for logs, metrics and tests, never the client."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class SigningKeyUnavailable(RuntimeError):
    """The active signing key cannot be used (e.g. the secret key does not decrypt it)."""


@dataclass(frozen=True)
class IssuedToken:
    """An access token as handed to the client."""

    access_token: str
    expires_in: int
    token_type: str = "Bearer"


def parse_header(token: str | bytes, *, max_bytes: int = MAX_TOKEN_BYTES) -> dict:
    """The unverified JOSE header of a compact JWS, or InvalidToken when it is not one."""
    if isinstance(token, (bytes, bytearray)):
        if len(token) > max_bytes:
            raise InvalidToken("too_large")
        try:
            token = bytes(token).decode("ascii")
        except UnicodeDecodeError:
            raise InvalidToken("malformed", "not ASCII") from None
    if not isinstance(token, str):
        raise InvalidToken("malformed", "not a string")
    if len(token) > max_bytes:
        raise InvalidToken("too_large")
    if not token.isascii():
        raise InvalidToken("malformed", "not ASCII")
    parts = token.split(".")
    if len(parts) != 3 or not _SEGMENT.fullmatch(parts[0]) or len(parts[0]) % 4 == 1:
        raise InvalidToken("malformed", "not a compact JWS")
    try:
        raw = base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4))
        header = json.loads(raw, object_pairs_hook=_unique_members)
    except (ValueError, TypeError, RecursionError):
        raise InvalidToken("malformed", "header is not JSON") from None
    if not isinstance(header, dict):
        raise InvalidToken("malformed", "header is not an object")
    return header


def _unique_members(pairs: list[tuple]) -> dict:
    # RFC 7515 §5.2: a duplicated member (two "alg"s) must be refused, not guessed at.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member")
    return result


def check_header(header: dict, *, algorithms: tuple[str, ...], typ: str | None) -> str:
    """Apply the RFC 8725 header rules and return the kid; `typ=None` leaves typ to the caller."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise InvalidToken("alg")
    if typ is not None and header.get("typ") != typ:
        raise InvalidToken("typ")
    forbidden = FORBIDDEN_HEADERS.intersection(header)
    if forbidden:
        raise InvalidToken("header", "forbidden parameter " + ",".join(sorted(forbidden)))
    kid = header.get("kid")
    if not isinstance(kid, str) or not _KID.fullmatch(kid):
        raise InvalidToken("kid")
    return kid


@dataclass(frozen=True)
class _PublicKey:
    kid: str
    key: Ed25519PublicKey
    jwk: dict
    created_at: float
    retired_at: float | None


@dataclass(frozen=True)
class _KeyRing:
    """One consistent snapshot of the signing_keys table, swapped whole so readers need no lock."""

    keys: dict[str, _PublicKey]
    active_kid: str | None
    loaded_at: float


class TokenService:
    """Issues and verifies the gateway's own portal access tokens (EdDSA/Ed25519, RFC 9068 style)."""

    def __init__(self, db: Database, *, issuer: str, audience: str, ttl: int, secret_key: str,
                 clock: Callable[[], float] = time.time):
        if not issuer or not audience:
            raise ValueError("issuer and audience are required")
        if not isinstance(ttl, int) or ttl <= 0:
            raise ValueError("ttl must be a positive number of seconds")
        if not secret_key:
            raise ValueError("a secret key is required to protect the signing keys")
        self._db = db
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl
        self._password = secret_key.encode()
        self._clock = clock
        self._lock = threading.Lock()
        self._ring: _KeyRing | None = None
        self._signer: tuple[str, Ed25519PrivateKey] | None = None

    def __repr__(self) -> str:
        return f"TokenService(issuer={self.issuer!r}, audience={self.audience!r}, ttl={self.ttl})"

    @classmethod
    def from_settings(cls, settings, db: Database) -> TokenService:
        """Build from the injected settings and database."""
        return cls(db, issuer=settings.jwt_issuer, audience=settings.jwt_audience,
                   ttl=settings.access_token_ttl, secret_key=settings.secret_key)

    # -- keys -------------------------------------------------------------------------

    def ensure_key(self) -> str:
        """Return the active kid, creating the first signing key if there is none."""
        ring = self._reload(self._clock())
        if ring.active_kid:
            return ring.active_kid
        try:
            with self._db.transaction() as session:
                self._lock_keys(session)
                # Re-read under the lock: another process may have created it meanwhile.
                kid = self._active_kid(session)
                if kid is None:
                    kid = self._add_key(session, self._now_dt())
        except IntegrityError:
            # Two creators picked the same kid (astronomically unlikely): the winner's key stands.
            with self._db.transaction() as session:
                kid = self._active_kid(session)
            if kid is None:
                raise
        self._reload(self._clock())
        return kid

    def rotate(self) -> str:
        """Create a new active key, retire every previously active one, and return the new kid."""
        now = self._now_dt()
        with self._db.transaction() as session:
            self._lock_keys(session)
            session.execute(update(SigningKey).where(SigningKey.retired_at.is_(None)).values(retired_at=now))
            kid = self._add_key(session, now)
        logger.info("signing key rotated", extra={"kid": kid})
        self._reload(self._clock())
        return kid

    def prune(self) -> int:
        """Delete retired keys whose last token has expired; return how many."""
        cutoff = datetime.fromtimestamp(self._clock() - self.ttl - LEEWAY, UTC)
        with self._db.transaction() as session:
            kids = session.scalars(select(SigningKey.kid).where(
                SigningKey.retired_at.is_not(None), SigningKey.retired_at < cutoff)).all()
            if kids:
                session.execute(delete(SigningKey).where(SigningKey.kid.in_(kids)))
        if kids:
            logger.info("retired signing keys pruned", extra={"count": len(kids)})
            self._reload(self._clock())
        return len(kids)

    def jwks(self) -> dict:
        """The public JWK Set: the active key and retired keys still inside their grace period."""
        ring = self._current()
        now = self._clock()
        live = [k for k in ring.keys.values() if self._usable(k, now)]
        live.sort(key=lambda k: (k.retired_at is None, k.created_at), reverse=True)
        return {"keys": [dict(k.jwk) for k in live]}

    # -- tokens -----------------------------------------------------------------------

    def issue(self, *, subject: str, org_id: str | None, roles: list[str],
              facilities: list[str], epoch: int = 0) -> IssuedToken:
        """Sign an access token for one principal with the active key."""
        if not isinstance(subject, str) or not subject:
            raise ValueError("subject must be a non-empty string")
        if org_id is not None and not isinstance(org_id, str):
            raise ValueError("org_id must be a string or None")
        if not _strings(roles) or not _strings(facilities):
            raise ValueError("roles and facilities must be lists of strings")
        kid, signer = self._signing_key()
        now = int(self._clock())
        claims = {
            "iss": self.issuer, "aud": self.audience, "sub": subject, "org": org_id,
            "roles": list(roles), "facilities": list(facilities),
            "exp": now + self.ttl, "iat": now, "nbf": now, "jti": secrets.token_urlsafe(16),
        }
        if epoch:
            # The user's credentials epoch (gateway.auth.accounts): a reset, change or deactivation moves it on.
            claims["epoch"] = epoch
        token = jwt.encode(claims, signer, algorithm=ALGORITHM, headers={"typ": TOKEN_TYPE, "kid": kid})
        return IssuedToken(access_token=token, expires_in=self.ttl)

    def verify(self, token: str) -> dict:
        """The claims of a valid access token; InvalidToken for anything else."""
        kid = check_header(parse_header(token), algorithms=(ALGORITHM,), typ=TOKEN_TYPE)
        key = self._verification_key(kid)
        try:
            claims = jwt.decode(
                token, key, algorithms=[ALGORITHM], audience=self.audience, issuer=self.issuer,
                # Times are checked below against the injectable clock, which pyjwt cannot use.
                options={"require": _REQUIRED_CLAIMS, "strict_aud": True, "verify_exp": False,
                         "verify_nbf": False, "verify_iat": False},
            )
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError, RecursionError) as exc:
            raise InvalidToken("rejected", f"{type(exc).__name__}: {exc}") from None
        _check_times(claims, self._clock())
        if not (_strings(claims.get("roles")) and _strings(claims.get("facilities"))
                and (claims.get("org") is None or isinstance(claims["org"], str))):
            raise InvalidToken("claims", "roles, facilities or org malformed")
        return claims

    # -- internals ---------------------------------------------------------------------

    def _verification_key(self, kid: str) -> Ed25519PublicKey:
        ring = self._current()
        entry = ring.keys.get(kid)
        if entry is None:
            now = self._clock()
            if 0 <= now - ring.loaded_at < RELOAD_MIN_INTERVAL:
                raise InvalidToken("unknown_kid")
            entry = self._reload(now, unless_newer_than=ring.loaded_at).keys.get(kid)
            if entry is None:
                raise InvalidToken("unknown_kid")
        if not self._usable(entry, self._clock()):
            raise InvalidToken("key_retired")
        return entry.key

    def _usable(self, entry: _PublicKey, now: float) -> bool:
        return entry.retired_at is None or now <= entry.retired_at + self.ttl + LEEWAY

    def _current(self) -> _KeyRing:
        """The cached keys, re-read when older than KEY_CACHE_SECONDS."""
        ring = self._ring
        now = self._clock()
        if ring is not None and 0 <= now - ring.loaded_at < KEY_CACHE_SECONDS:
            return ring
        if ring is None:
            return self._reload(now)
        try:
            return self._reload(now, unless_newer_than=ring.loaded_at)
        except Exception:
            # The database is unreachable: keep verifying with the keys we have, and try
            # again after RELOAD_MIN_INTERVAL instead of on every request.
            logger.warning("signing keys could not be re-read; using cached keys", exc_info=True)
            retry_at = now - KEY_CACHE_SECONDS + RELOAD_MIN_INTERVAL
            self._ring = _KeyRing(ring.keys, ring.active_kid, retry_at)
            return self._ring

    def _reload(self, now: float, unless_newer_than: float | None = None) -> _KeyRing:
        with self._lock:
            ring = self._ring
            # Another thread re-read while we waited for the lock.
            if unless_newer_than is not None and ring is not None and ring.loaded_at > unless_newer_than:
                return ring
            with self._db.transaction() as session:
                rows = session.execute(select(
                    SigningKey.kid, SigningKey.algorithm, SigningKey.public_jwk,
                    SigningKey.created_at, SigningKey.retired_at)).all()
            keys = {}
            for row in rows:
                entry = _public_key(row)
                if entry is not None:
                    keys[entry.kid] = entry
            active = [k for k in keys.values() if k.retired_at is None]
            active_kid = max(active, key=lambda k: (k.created_at, k.kid)).kid if active else None
            self._ring = _KeyRing(keys, active_kid, now)
            return self._ring

    def _signing_key(self) -> tuple[str, Ed25519PrivateKey]:
        ring = self._current()
        if ring.active_kid is None:
            self.ensure_key()
            ring = self._current()
        signer = self._signer
        if signer is not None and signer[0] == ring.active_kid:
            return signer
        with self._db.transaction() as session:
            pem = session.scalar(select(SigningKey.private_pem).where(SigningKey.kid == ring.active_kid))
        if pem is None:
            raise SigningKeyUnavailable(f"signing key {ring.active_kid} vanished; retry")
        try:
            private = serialization.load_pem_private_key(pem.encode("ascii"), self._password)
        except (ValueError, TypeError):
            raise SigningKeyUnavailable(
                f"signing key {ring.active_kid} cannot be decrypted with the configured secret key") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise SigningKeyUnavailable(f"signing key {ring.active_kid} is not an Ed25519 key")
        self._signer = (ring.active_kid, private)
        return self._signer

    def _add_key(self, session, now: datetime) -> str:
        private = Ed25519PrivateKey.generate()
        kid = secrets.token_urlsafe(12)
        raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": _b64url(raw), "kid": kid, "alg": ALGORITHM, "use": "sig"}
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.BestAvailableEncryption(self._password)).decode("ascii")
        session.add(SigningKey(kid=kid, algorithm=ALGORITHM, public_jwk=jwk, private_pem=pem, created_at=now))
        session.flush()
        logger.info("signing key created", extra={"kid": kid})
        return kid

    @staticmethod
    def _active_kid(session) -> str | None:
        return session.scalar(select(SigningKey.kid).where(SigningKey.retired_at.is_(None))
                              .order_by(SigningKey.created_at.desc(), SigningKey.kid.desc()).limit(1))

    def _lock_keys(self, session) -> None:
        # Kids are random, so the primary key alone cannot stop two processes from each
        # creating a "first" key: serialize the writers, then re-read under the lock.
        if self._db.engine.dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})
        else:
            # A write, even of no rows, takes SQLite's database write lock for the transaction.
            session.execute(text("UPDATE signing_keys SET kid = kid WHERE 1 = 0"))

    def _now_dt(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)


def _public_key(row) -> _PublicKey | None:
    jwk = row.public_jwk
    if row.algorithm != ALGORITHM or not isinstance(jwk, dict) or jwk.get("crv") != "Ed25519":
        return None
    try:
        x = jwk["x"]
        key = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)))
    except (KeyError, TypeError, ValueError):
        logger.warning("unusable signing key row skipped", extra={"kid": row.kid})
        return None
    return _PublicKey(row.kid, key, jwk, row.created_at.timestamp(),
                      row.retired_at.timestamp() if row.retired_at else None)


def _check_times(claims: dict, now: float) -> None:
    values = {}
    for name in ("exp", "iat", "nbf"):
        value = claims.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidToken("claims", f"{name} is not a number")
        values[name] = value
    if values["exp"] <= now - LEEWAY:
        raise InvalidToken("expired")
    if values["nbf"] > now + LEEWAY or values["iat"] > now + LEEWAY:
        raise InvalidToken("not_yet_valid")


def _strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

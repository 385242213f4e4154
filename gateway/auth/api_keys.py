"""API keys `rgw_<public id>_<secret>`: generated from `secrets`, stored as a hash, compared in constant time.

The secret has ~238 bits of entropy, so a fast hash (SHA-256) is the right
store: a slow password hash would add latency to every API call and no
security.  The public id finds the row; the hash comparison proves the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from gateway.auth.models import SCOPES, ApiKey, Organization
from gateway.db import utcnow

PREFIX = "rgw_"
_PUBLIC_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits
_FORMAT = re.compile(r"^rgw_([a-z0-9]{16})_([A-Za-z0-9]{40})$")
# last_used_at is refreshed at most this often, so keys don't cost a write per request.
LAST_USED_GRANULARITY = timedelta(minutes=1)
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


class InvalidScopes(ValueError):
    """A scope outside SCOPES was asked for."""


def looks_like_api_key(credential: str) -> bool:
    """Cheap routing test: API keys and JWTs are told apart by the prefix."""
    return credential.startswith(PREFIX)


def hash_secret(secret: str) -> str:
    """The stored form of a key's secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(session: Session, *, org_id: str, scopes: list[str], name: str = "",
                   expires_in_days: int | None = None, created_by: str | None = None) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the full key, which is never retrievable again."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise InvalidScopes(f"scopes must be a non-empty subset of {', '.join(SCOPES)}")
    public_id = "".join(secrets.choice(_PUBLIC_ALPHABET) for _ in range(16))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40))
    key = ApiKey(org_id=org_id, public_id=public_id, secret_hash=hash_secret(secret), name=name,
                 scopes=sorted(set(scopes)), created_by=created_by,
                 expires_at=utcnow() + timedelta(days=expires_in_days) if expires_in_days else None)
    session.add(key)
    session.flush()
    return key, f"{PREFIX}{public_id}_{secret}"


def authenticate_api_key(session: Session, presented: str, *, now: datetime | None = None) -> ApiKey | None:
    """The live key this credential proves, or None (malformed, unknown, wrong secret, revoked, expired)."""
    found = authenticate_api_key_with_org(session, presented, now=now)
    return found[0] if found else None


# Built once (every API call runs it): only the public id changes.
_KEY_WITH_ORG = (select(ApiKey, Organization).outerjoin(Organization, Organization.id == ApiKey.org_id)
                 .where(ApiKey.public_id == bindparam("public_id")))


def authenticate_api_key_with_org(session: Session, presented: str, *, now: datetime | None = None
                                  ) -> tuple[ApiKey, Organization | None] | None:
    """The live key this credential proves and its organization, read in one query; None as above.

    Every API call authenticates, so the key and its organization come in one round trip.  Nothing is
    cached between requests: a key revoked (or an organization deactivated) stops working at its next call.
    """
    match = _FORMAT.match(presented)
    if not match:
        return None
    public_id, secret = match.groups()
    row = session.execute(_KEY_WITH_ORG, {"public_id": public_id}).one_or_none()
    key, org = row if row is not None else (None, None)
    # Compare even when the id is unknown, so timing does not reveal which ids exist.
    matches = hmac.compare_digest(hash_secret(secret), key.secret_hash if key else _DUMMY_HASH)
    now = now or utcnow()
    if key is None or not matches or key.revoked_at is not None:
        return None
    if key.expires_at is not None and key.expires_at <= now:
        return None
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_GRANULARITY:
        key.last_used_at = now
    return key, org


def revoke_api_key(key: ApiKey) -> bool:
    """Revoke a key; False when it was already revoked."""
    if key.revoked_at is not None:
        return False
    key.revoked_at = utcnow()
    return True

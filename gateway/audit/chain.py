"""The audit chain's arithmetic: canonical entry bytes, entry hashes by scheme, derived keys.

Two hash schemes exist.  Scheme 1 (entries written before migration 0009) is
SHA-256 over the previous hash and the entry: anyone holding the database can
recompute it, so on its own it proves nothing against a DBA.  Scheme 2 is
HMAC-SHA256 under a key derived from GATEWAY_AUDIT_CHAIN_KEY, which never
enters the database.  A chain may start with scheme-1 entries and continue with
scheme 2, never the other way round; the first keyed entry covers the last
legacy hash, so the legacy prefix cannot be rewritten either without the key.

Pure functions only: no database, no settings, no I/O.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from datetime import datetime

GENESIS = "0" * 64
LEGACY_SCHEME = 1
KEYED_SCHEME = 2
SCHEMES = (LEGACY_SCHEME, KEYED_SCHEME)

# One derived key per use, so an entry hash can never be presented as a checkpoint signature.
_ENTRY_PURPOSE = b"records-gateway:audit-entry:v2"
_CHECKPOINT_PURPOSE = b"records-gateway:audit-checkpoint:v1"
_FINGERPRINT_PURPOSE = b"records-gateway:audit-key-fingerprint:v1"


class MissingChainKey(RuntimeError):
    """The database handle carries no audit chain key, so no keyed entry can be written or checked."""


def _derive(chain_key: str, purpose: bytes) -> bytes:
    if not chain_key:
        raise MissingChainKey("no audit chain key configured (GATEWAY_AUDIT_CHAIN_KEY)")
    return hmac.new(chain_key.encode(), purpose, hashlib.sha256).digest()


@functools.lru_cache(maxsize=8)
def entry_key(chain_key: str) -> bytes:
    """The HMAC key of scheme-2 entry hashes (derived once per key: every audit append needs it)."""
    return _derive(chain_key, _ENTRY_PURPOSE)


def checkpoint_key(chain_key: str) -> bytes:
    """The HMAC key that signs checkpoints."""
    return _derive(chain_key, _CHECKPOINT_PURPOSE)


def key_fingerprint(chain_key: str) -> str:
    """A short public name of the chain key (checkpoints carry it, so a wrong key is told from a forgery)."""
    return _derive(chain_key, _FINGERPRINT_PURPOSE).hex()[:16]


def canonical(seq: int, at: datetime, fields: dict) -> bytes:
    """The exact bytes an entry's hash covers; stable across databases."""
    body = {"seq": seq, "at": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), **fields}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def entry_hash(scheme: int, prev_hash: str, body: bytes, key: bytes | None) -> str:
    """The hash of one entry under its scheme (`key` is the entry key; scheme 1 ignores it)."""
    message = prev_hash.encode() + b"\n" + body
    if scheme == LEGACY_SCHEME:
        return hashlib.sha256(message).hexdigest()
    if scheme == KEYED_SCHEME:
        if key is None:
            raise MissingChainKey("a keyed audit entry needs the chain key")
        return hmac.new(key, message, hashlib.sha256).hexdigest()
    raise ValueError(f"unknown audit hash scheme {scheme!r}")

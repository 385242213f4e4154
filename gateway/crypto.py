"""Sealing secrets the gateway must use again (webhook signing secrets): AES-256-GCM under GATEWAY_SECRET_KEY.

A database dump alone then yields no usable secret.  Hashes are for secrets we
only compare (API keys, passwords); sealing is for secrets we must present.
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = "v1"


def _key(secret_key: str, purpose: str) -> bytes:
    # One derived key per purpose, so a secret sealed for one use cannot be opened as another.
    return hashlib.sha256(f"records-gateway:{purpose}:".encode() + secret_key.encode()).digest()


def seal(secret_key: str, plaintext: str, *, purpose: str) -> str:
    """Encrypt and authenticate `plaintext`; the result is printable and safe to store."""
    nonce = os.urandom(12)
    sealed = AESGCM(_key(secret_key, purpose)).encrypt(nonce, plaintext.encode(), purpose.encode())
    return f"{_VERSION}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"


def unseal(secret_key: str, token: str, *, purpose: str) -> str:
    """The plaintext of a sealed value; raises ValueError if it was tampered with or sealed otherwise."""
    version, _, data = token.partition(".")
    if version != _VERSION:
        raise ValueError("unknown sealing version")
    raw = base64.urlsafe_b64decode(data)
    try:
        return AESGCM(_key(secret_key, purpose)).decrypt(raw[:12], raw[12:], purpose.encode()).decode()
    except Exception:
        raise ValueError("sealed value cannot be opened with this key") from None

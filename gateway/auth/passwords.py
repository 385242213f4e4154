"""Password hashing with Argon2id (argon2-cffi's RFC 9106 low-memory profile)."""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.profiles import RFC_9106_LOW_MEMORY

# The password of an account made by hospital sign-on: not an Argon2 hash, so no password verifies against
# it; the person signs in only through the hospital's provider.
NO_PASSWORD = "!sso-only"

MIN_LENGTH = 12
MAX_LENGTH = 256  # bounds the hashing work one request can ask for

PROFILES = {
    "rfc9106": lambda: PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY),
    # Real Argon2id at its smallest cost: a test suite makes and signs in thousands of accounts.
    "test-minimal": lambda: PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
}
_profile = "rfc9106"
_hasher = PROFILES[_profile]()


class WeakPassword(ValueError):
    """The password does not meet the policy."""


def check_policy(password: str) -> None:
    """Length is what matters (NIST SP 800-63B); composition rules are not imposed."""
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise WeakPassword(f"passwords are {MIN_LENGTH} to {MAX_LENGTH} characters")


def hash_password(password: str) -> str:
    """A salted Argon2id hash of a policy-conforming password."""
    check_policy(password)
    return _hasher.hash(password)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # Made by the same hasher as real hashes, so verifying against it costs what verifying a real one does.
    return _hasher.hash("not a real password, used to even out timing")


def prepare(profile: str = "rfc9106") -> None:
    """Take the settings' hashing profile and make the dummy hash now (at app start), so the first unknown
    e-mail is not slower than the rest.  One profile per process: the app factory calls this."""
    global _hasher, _profile
    if profile != _profile:
        _hasher, _profile = PROFILES[profile](), profile
        _dummy_hash.cache_clear()
    _dummy_hash()


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Check a password; with no stored hash, spend the same time and say no."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _hasher.verify(stored_hash or _dummy_hash(), password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False

"""Portal access tokens (TokenService) on SQLite and PostgreSQL, and external OIDC tokens.

Self-contained on purpose: the database and JWKS-server fixtures live in this file
so it also runs with --noconftest.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.server
import json
import os
import socket
import threading
import time
import uuid
from typing import ClassVar

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from sqlalchemy import create_engine, delete, event, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from gateway import migrate
from gateway.auth.models import SigningKey
from gateway.auth.oidc import OidcVerifier
from gateway.auth.tokens import (
    KEY_CACHE_SECONDS,
    LEEWAY,
    RELOAD_MIN_INTERVAL,
    InvalidToken,
    IssuedToken,
    SigningKeyUnavailable,
    TokenService,
)
from gateway.db import Database

PG_ADMIN_URL = os.environ.get("GATEWAY_TEST_PG_ADMIN_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
ISSUER = "records-gateway"
AUDIENCE = "records-gateway-api"
TTL = 900
SECRET = "test-secret-key-0123456789-abcdefghijklmnop"
START = 1_900_000_000.0


# -- fixtures ---------------------------------------------------------------------------

class FakeClock:
    """A settable clock for the service (seconds since the epoch)."""

    def __init__(self, now: float = START):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _pg_admin_engine():
    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def token_db_url(request, tmp_path_factory):
    """A migrated database of each kind, made for this session and removed after it."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('tokens') / 'gateway.db'}"
        migrate.upgrade(url)
        yield url
        return
    name = f"gateway_tokens_{uuid.uuid4().hex[:12]}"
    admin = _pg_admin_engine()
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required under CI: {type(exc).__name__}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}")
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def db(token_db_url):
    """The session database with an empty signing_keys table."""
    database = Database(token_db_url)
    with database.transaction() as session:
        session.execute(delete(SigningKey))
    yield database
    database.dispose()


@pytest.fixture
def clock():
    return FakeClock()


def make_service(db, clock, **overrides) -> TokenService:
    options = {"issuer": ISSUER, "audience": AUDIENCE, "ttl": TTL, "secret_key": SECRET, "clock": clock}
    options.update(overrides)
    return TokenService(db, **options)


@pytest.fixture
def service(db, clock):
    return make_service(db, clock)


@pytest.fixture
def kid(service):
    return service.ensure_key()


# -- helpers ----------------------------------------------------------------------------

def b64(data) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forge(header: dict, claims: dict, sign) -> str:
    """A compact JWS built by hand, so that headers pyjwt would refuse to write can be sent."""
    signing_input = f"{b64(header)}.{b64(claims)}".encode()
    return f"{signing_input.decode()}.{b64(sign(signing_input))}"


def real_signer(db, kid):
    """Our own private key, decrypted from the database with the secret (as an insider could)."""
    with db.transaction() as session:
        pem = session.scalar(select(SigningKey.private_pem).where(SigningKey.kid == kid))
    return serialization.load_pem_private_key(pem.encode(), SECRET.encode())


def good_claims(clock, **changes) -> dict:
    now = int(clock())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "org": "org-1", "roles": ["requester"],
              "facilities": [], "exp": now + TTL, "iat": now, "nbf": now, "jti": "j-1"}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not ...}


def signed(db, kid, clock, header_changes=None, **claim_changes) -> str:
    """A token signed with our real key, with headers and claims altered as asked."""
    key = real_signer(db, kid)
    header = {"alg": "EdDSA", "typ": "at+jwt", "kid": kid}
    header.update(header_changes or {})
    return forge({k: v for k, v in header.items() if v is not ...}, good_claims(clock, **claim_changes), key.sign)


@contextlib.contextmanager
def statements(engine):
    """Collect the SQL statements sent to the database inside the block."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def reason(excinfo) -> str:
    return excinfo.value.reason


# -- issue and verify -------------------------------------------------------------------

def test_round_trip_carries_exact_claims_and_header(service, kid, clock):
    issued = service.issue(subject="user-1", org_id="org-9", roles=["requester", "requester_admin"],
                           facilities=["tufts-mc"])
    assert isinstance(issued, IssuedToken)
    assert issued.token_type == "Bearer" and issued.expires_in == TTL
    header = jwt.get_unverified_header(issued.access_token)
    assert header == {"alg": "EdDSA", "typ": "at+jwt", "kid": kid}
    claims = service.verify(issued.access_token)
    now = int(START)
    assert set(claims) == {"iss", "aud", "sub", "org", "roles", "facilities", "exp", "iat", "nbf", "jti"}
    assert claims["iss"] == ISSUER and claims["aud"] == AUDIENCE and claims["sub"] == "user-1"
    assert claims["org"] == "org-9"
    assert claims["roles"] == ["requester", "requester_admin"] and claims["facilities"] == ["tufts-mc"]
    assert claims["iat"] == claims["nbf"] == now and claims["exp"] == now + TTL
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16


def test_org_may_be_null_and_jti_is_unique(service, kid):
    first = service.verify(service.issue(subject="staff-1", org_id=None, roles=["facility_staff"],
                                         facilities=["lowell-general"]).access_token)
    second = service.verify(service.issue(subject="staff-1", org_id=None, roles=["facility_staff"],
                                          facilities=["lowell-general"]).access_token)
    assert first["org"] is None
    assert first["jti"] != second["jti"]


def test_issue_creates_the_first_key_when_there_is_none(service, db):
    token = service.issue(subject="u", org_id=None, roles=[], facilities=[]).access_token
    with db.transaction() as session:
        kids = session.scalars(select(SigningKey.kid)).all()
    assert kids == [jwt.get_unverified_header(token)["kid"]]
    assert service.verify(token)["sub"] == "u"


def test_issue_rejects_malformed_arguments(service, kid):
    with pytest.raises(ValueError):
        service.issue(subject="", org_id=None, roles=[], facilities=[])
    with pytest.raises(ValueError):
        service.issue(subject="u", org_id=None, roles="requester", facilities=[])


def test_verify_does_not_query_the_database_for_a_cached_kid(service, kid, db):
    token = service.issue(subject="u", org_id=None, roles=[], facilities=[]).access_token
    service.verify(token)
    with statements(db.engine) as seen:
        for _ in range(50):
            service.verify(token)
    assert seen == []


# -- algorithm confusion ------------------------------------------------------------------

@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_is_rejected(service, kid, clock, alg):
    header = b64({"alg": alg, "typ": "at+jwt", "kid": kid})
    token = f"{header}.{b64(good_claims(clock))}."
    with pytest.raises(InvalidToken) as excinfo:
        service.verify(token)
    assert reason(excinfo) == "alg"


def _public_forms(db, kid):
    public = real_signer(db, kid).public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {"raw": raw, "pem": pem, "jwk": json.dumps(OKPAlgorithm.to_jwk(public, as_dict=True)).encode()}


@pytest.mark.parametrize("form", ["raw", "pem", "jwk"])
def test_hs256_signed_with_our_public_key_is_rejected(service, kid, db, clock, form):
    secret = _public_forms(db, kid)[form]
    token = forge({"alg": "HS256", "typ": "at+jwt", "kid": kid}, good_claims(clock),
                  lambda data: hmac.new(secret, data, hashlib.sha256).digest())
    with pytest.raises(InvalidToken) as excinfo:
        service.verify(token)
    assert reason(excinfo) == "alg"


def test_rs256_from_another_key_with_our_kid_is_rejected(service, kid, clock):
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(good_claims(clock), attacker, algorithm="RS256", headers={"typ": "at+jwt", "kid": kid})
    with pytest.raises(InvalidToken) as excinfo:
        service.verify(token)
    assert reason(excinfo) == "alg"


def test_eddsa_from_another_key_with_our_kid_is_rejected(service, kid, clock):
    attacker = Ed25519PrivateKey.generate()
    token = forge({"alg": "EdDSA", "typ": "at+jwt", "kid": kid}, good_claims(clock), attacker.sign)
    with pytest.raises(InvalidToken) as excinfo:
        service.verify(token)
    assert reason(excinfo) == "rejected"


# -- time -----------------------------------------------------------------------------------

def test_expired_token_is_rejected_after_the_leeway(service, kid, clock):
    token = service.issue(subject="u", org_id=None, roles=[], facilities=[]).access_token
    clock.advance(TTL + LEEWAY - 1)
    assert service.verify(token)["sub"] == "u"
    clock.advance(1)
    with pytest.raises(InvalidToken) as excinfo:
        service.verify(token)
    assert reason(excinfo) == "expired"


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_token_from_the_future_is_rejected_beyond_the_leeway(service, kid, db, clock, claim):
    later = int(clock()) + LEEWAY + 60
    token = signed(db, kid, clock, **{claim: later, "exp": later + TTL})
    with pytest.raises(InvalidToken) as excinfo:
        service.verify(token)
    assert reason(excinfo) == "not_yet_valid"
    slightly_ahead = int(clock()) + LEEWAY - 5
    assert service.verify(signed(db, kid, clock, **{claim: slightly_ahead}))["sub"] == "user-1"


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("value", ["1900000000", True, None, [1], 1e400])
def test_time_claims_must_be_numbers(service, kid, db, clock, claim, value):
    with pytest.raises(InvalidToken):
        service.verify(signed(db, kid, clock, **{claim: value}))


# -- audience, issuer, required claims ------------------------------------------------------

def test_wrong_audience_is_rejected(service, kid, db, clock):
    other = make_service(db, clock, audience="another-api")
    token = other.issue(subject="u", org_id=None, roles=[], facilities=[]).access_token
    with pytest.raises(InvalidToken) as excinfo:
        service.verify(token)
    assert "InvalidAudienceError" in str(excinfo.value)
    for aud in ([AUDIENCE, "another-api"], [AUDIENCE], ""):
        with pytest.raises(InvalidToken):
            service.verify(signed(db, kid, clock, aud=aud))


def test_wrong_issuer_is_rejected(service, kid, db, clock):
    other = make_service(db, clock, issuer="https://evil.example")
    token = other.issue(subject="u", org_id=None, roles=[], facilities=[]).access_token
    with pytest.raises(InvalidToken) as excinfo:
        service.verify(token)
    assert "InvalidIssuerError" in str(excinfo.value)


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf", "sub", "aud", "iss", "jti"])
def test_missing_required_claim_is_rejected(service, kid, db, clock, claim):
    with pytest.raises(InvalidToken) as excinfo:
        service.verify(signed(db, kid, clock, **{claim: ...}))
    assert "MissingRequiredClaimError" in str(excinfo.value)


@pytest.mark.parametrize("changes", [{"roles": "gateway_admin"}, {"facilities": [1]}, {"org": 5},
                                     {"sub": 7}, {"roles": ...}])
def test_malformed_authorization_claims_are_rejected(service, kid, db, clock, changes):
    with pytest.raises(InvalidToken):
        service.verify(signed(db, kid, clock, **changes))


def test_tampered_payload_is_rejected(service, kid):
    token = service.issue(subject="u", org_id="org-1", roles=["requester"], facilities=[]).access_token
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["roles"] = ["gateway_admin"]
    with pytest.raises(InvalidToken) as excinfo:
        service.verify(f"{header}.{b64(claims)}.{signature}")
    assert "InvalidSignatureError" in str(excinfo.value)


# -- headers --------------------------------------------------------------------------------

@pytest.mark.parametrize("bad_kid", ["../../etc/passwd", "' OR 1=1--", "a" * 65, "", "kid\n",
                                     "k%00", 12, None, ["a"]])
def test_hostile_kid_is_rejected_without_touching_the_database(service, kid, db, clock, bad_kid):
    token = signed(db, kid, clock, {"kid": bad_kid})
    clock.advance(KEY_CACHE_SECONDS * 10)  # even a stale cache must not be refreshed for it
    with statements(db.engine) as seen, pytest.raises(InvalidToken) as excinfo:
        service.verify(token)
    assert reason(excinfo) == "kid"
    assert seen == []


def test_missing_kid_is_rejected(service, kid, db, clock):
    with pytest.raises(InvalidToken) as excinfo:
        service.verify(signed(db, kid, clock, {"kid": ...}))
    assert reason(excinfo) == "kid"


def test_unknown_kid_is_rejected(service, kid, db, clock):
    key = real_signer(db, kid)
    token = forge({"alg": "EdDSA", "typ": "at+jwt", "kid": "no-such-kid-42"}, good_claims(clock), key.sign)
    clock.advance(RELOAD_MIN_INTERVAL)
    with pytest.raises(InvalidToken) as excinfo:
        service.verify(token)
    assert reason(excinfo) == "unknown_kid"


def test_a_flood_of_unknown_kids_rereads_the_keys_at_most_once(service, kid, db, clock):
    key = real_signer(db, kid)
    tokens = [forge({"alg": "EdDSA", "typ": "at+jwt", "kid": f"random-{i}"}, good_claims(clock), key.sign)
              for i in range(100)]
    clock.advance(RELOAD_MIN_INTERVAL)
    with statements(db.engine) as seen:
        for token in tokens:
            with pytest.raises(InvalidToken):
                service.verify(token)
    assert len([s for s in seen if "signing_keys" in s]) == 1


@pytest.mark.parametrize("name, value", [
    ("jku", "https://attacker.example/jwks.json"),
    ("x5u", "https://attacker.example/cert.pem"),
    ("x5c", ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]),
    ("crit", ["exp"]),
    ("b64", False),
])
def test_forbidden_headers_are_rejected_even_when_signed_by_us(service, kid, db, clock, name, value):
    with pytest.raises(InvalidToken) as excinfo:
        service.verify(signed(db, kid, clock, {name: value}))
    assert reason(excinfo) == "header"


def test_embedded_jwk_header_is_rejected(service, kid, clock):
    attacker = Ed25519PrivateKey.generate()
    embedded = OKPAlgorithm.to_jwk(attacker.public_key(), as_dict=True)
    for header_kid in (kid, "attacker"):
        token = forge({"alg": "EdDSA", "typ": "at+jwt", "kid": header_kid, "jwk": embedded},
                      good_claims(clock), attacker.sign)
        with pytest.raises(InvalidToken) as excinfo:
            service.verify(token)
        assert reason(excinfo) == "header"


@pytest.mark.parametrize("typ", ["JWT", "jwt", "application/at+jwt+x", "AT+JWT", "", None, ...])
def test_wrong_typ_is_rejected(service, kid, db, clock, typ):
    with pytest.raises(InvalidToken) as excinfo:
        service.verify(signed(db, kid, clock, {"typ": typ}))
    assert reason(excinfo) == "typ"


def test_duplicate_header_member_is_rejected(service, kid, db, clock):
    key = real_signer(db, kid)
    header = f'{{"alg":"none","alg":"EdDSA","typ":"at+jwt","kid":"{kid}"}}'.encode()
    signing_input = f"{b64(header)}.{b64(good_claims(clock))}".encode()
    with pytest.raises(InvalidToken) as excinfo:
        service.verify(f"{signing_input.decode()}.{b64(key.sign(signing_input))}")
    assert reason(excinfo) == "malformed"


def test_oversize_token_is_rejected_up_front(service, kid, db, clock):
    token = signed(db, kid, clock, facilities=["f" * 9000])
    assert len(token) > 8 * 1024
    with pytest.raises(InvalidToken) as excinfo:
        service.verify(token)
    assert reason(excinfo) == "too_large"
    with pytest.raises(InvalidToken) as excinfo:
        service.verify(token.encode())
    assert reason(excinfo) == "too_large"


@pytest.mark.parametrize("token", ["", "a", "a.b", "a.b.c.d", "....", "Bearer x.y.z", None, 42,
                                   "eyJhbGciOiJFZERTQSJ9.e30.", "é.é.é", b"\xff.\xfe.\xfd"])
def test_garbage_is_rejected(service, kid, token):
    with pytest.raises(InvalidToken):
        service.verify(token)


# -- keys: rotation, publication, pruning, storage ------------------------------------------

def test_rotation_keeps_old_tokens_valid_until_ttl_plus_leeway(service, kid, clock):
    old_token = service.issue(subject="u", org_id=None, roles=[], facilities=[]).access_token
    clock.advance(60)
    new_kid = service.rotate()
    assert new_kid != kid
    new_token = service.issue(subject="u", org_id=None, roles=[], facilities=[]).access_token
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid
    assert service.verify(old_token)["sub"] == "u"
    assert service.verify(new_token)["sub"] == "u"
    assert [k["kid"] for k in service.jwks()["keys"]] == [new_kid, kid]
    assert service.prune() == 0

    clock.advance(TTL + LEEWAY)  # exactly the end of the old key's grace period
    assert [k["kid"] for k in service.jwks()["keys"]] == [new_kid, kid]
    clock.advance(1)
    assert [k["kid"] for k in service.jwks()["keys"]] == [new_kid]
    assert service.prune() == 1
    assert service.prune() == 0
    assert [k["kid"] for k in service.jwks()["keys"]] == [new_kid]


def test_retired_key_stops_verifying_after_its_grace_period(service, kid, db, clock):
    # A worker that has not yet noticed a rotation elsewhere keeps signing with the old key.
    cli = make_service(Database(db.url), clock)
    try:
        clock.advance(5)
        cli.rotate()
        clock.advance(KEY_CACHE_SECONDS - 6)
        late = service.issue(subject="u", org_id=None, roles=[], facilities=[]).access_token
        assert jwt.get_unverified_header(late)["kid"] == kid
        retired_at = START + 5
        clock.now = retired_at + TTL + LEEWAY
        assert service.verify(late)["sub"] == "u"
        clock.advance(1)
        with pytest.raises(InvalidToken) as excinfo:
            service.verify(late)
        assert reason(excinfo) == "key_retired"
    finally:
        cli._db.dispose()


def test_worker_adopts_a_rotation_made_elsewhere_within_the_cache_period(service, kid, db, clock):
    cli = make_service(Database(db.url), clock)
    try:
        new_kid = cli.rotate()
        clock.advance(KEY_CACHE_SECONDS)
        token = service.issue(subject="u", org_id=None, roles=[], facilities=[]).access_token
        assert jwt.get_unverified_header(token)["kid"] == new_kid
    finally:
        cli._db.dispose()


def test_rotation_by_another_process_is_picked_up_on_an_unknown_kid(service, kid, db, clock):
    assert service.jwks()["keys"][0]["kid"] == kid  # keys cached at START
    cli = make_service(Database(db.url), clock)
    try:
        new_kid = cli.rotate()
        token = cli.issue(subject="u", org_id=None, roles=[], facilities=[]).access_token
        assert jwt.get_unverified_header(token)["kid"] == new_kid
        # Within RELOAD_MIN_INTERVAL of the last read the kid is refused without a query...
        with statements(db.engine) as seen, pytest.raises(InvalidToken):
            service.verify(token)
        assert seen == []
        # ...and once the throttle has passed, one re-read picks the new key up.
        clock.advance(RELOAD_MIN_INTERVAL)
        with statements(db.engine) as seen:
            assert service.verify(token)["sub"] == "u"
            assert service.verify(token)["sub"] == "u"
        assert len(seen) == 1
        assert {k["kid"] for k in service.jwks()["keys"]} == {kid, new_kid}
    finally:
        cli._db.dispose()


def test_a_deleted_key_stops_verifying_after_the_cache_period(service, kid, db, clock):
    token = service.issue(subject="u", org_id=None, roles=[], facilities=[]).access_token
    service.verify(token)
    with db.transaction() as session:
        session.execute(delete(SigningKey).where(SigningKey.kid == kid))
    clock.advance(KEY_CACHE_SECONDS)
    with pytest.raises(InvalidToken) as excinfo:
        service.verify(token)
    assert reason(excinfo) == "unknown_kid"


def test_cached_keys_survive_a_database_outage(service, kid, db, clock, monkeypatch):
    token = service.issue(subject="u", org_id=None, roles=[], facilities=[]).access_token
    calls = []

    def broken():
        calls.append(1)
        raise ConnectionError("database down")

    monkeypatch.setattr(db, "transaction", broken)
    clock.advance(KEY_CACHE_SECONDS)
    assert service.verify(token)["sub"] == "u"
    assert service.verify(token)["sub"] == "u"  # no retry before RELOAD_MIN_INTERVAL
    assert len(calls) == 1


def test_ensure_key_is_idempotent(service, db):
    first = service.ensure_key()
    assert service.ensure_key() == first
    assert make_service(db, FakeClock()).ensure_key() == first
    with db.transaction() as session:
        assert session.scalars(select(SigningKey.kid)).all() == [first]


def _ensure_key_concurrently(url: str, workers: int) -> list:
    """ensure_key run at the same instant by services on separate engines (as separate processes)."""
    databases = [Database(url) for _ in range(workers)]
    services = [make_service(database, FakeClock()) for database in databases]
    barrier = threading.Barrier(workers)
    results: list = [None] * workers

    def run(index):
        barrier.wait()
        try:
            results[index] = services[index].ensure_key()
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for database in databases:
        database.dispose()
    return results


def test_ensure_key_is_safe_when_processes_race(token_db_url, db):
    for _ in range(3):
        with db.transaction() as session:
            session.execute(delete(SigningKey))
        results = _ensure_key_concurrently(token_db_url, 4)
        assert all(isinstance(r, str) for r in results), results
        assert len(set(results)) == 1
        with db.transaction() as session:
            assert session.scalars(select(SigningKey.kid)).all() == [results[0]]


def test_rotate_retires_every_active_key(service, db, clock):
    # Even if something left two unretired keys behind, one rotation settles it.
    first = service.ensure_key()
    with db.transaction() as session:
        other = session.get(SigningKey, first)
        session.add(SigningKey(kid="second-active", algorithm=other.algorithm, public_jwk=other.public_jwk,
                               private_pem=other.private_pem, created_at=other.created_at))
    new_kid = service.rotate()
    with db.transaction() as session:
        active = session.scalars(select(SigningKey.kid).where(SigningKey.retired_at.is_(None))).all()
    assert active == [new_kid]


def test_private_key_is_stored_encrypted(service, kid, db):
    with db.transaction() as session:
        row = session.get(SigningKey, kid)
    assert row.algorithm == "EdDSA"
    assert "BEGIN PRIVATE KEY" not in row.private_pem
    assert "BEGIN ENCRYPTED PRIVATE KEY" in row.private_pem
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(row.private_pem.encode(), None)
    with pytest.raises(ValueError):
        serialization.load_pem_private_key(row.private_pem.encode(), b"not-the-secret")
    private = serialization.load_pem_private_key(row.private_pem.encode(), SECRET.encode())
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert row.public_jwk == {"kty": "OKP", "crv": "Ed25519", "x": b64(raw), "kid": kid,
                              "alg": "EdDSA", "use": "sig"}
    assert service.jwks() == {"keys": [row.public_jwk]}


def test_wrong_secret_cannot_sign_but_can_still_verify(service, kid, db, clock):
    token = service.issue(subject="u", org_id=None, roles=[], facilities=[]).access_token
    stranger = make_service(db, clock, secret_key="another-secret-key-of-sufficient-length!")
    with pytest.raises(SigningKeyUnavailable):
        stranger.issue(subject="u", org_id=None, roles=[], facilities=[])
    assert stranger.verify(token)["sub"] == "u"


def test_jwks_members_are_public_only(service, kid):
    for key in service.jwks()["keys"]:
        assert set(key) == {"kty", "crv", "x", "kid", "alg", "use"}


def test_repr_does_not_show_the_secret(service):
    assert SECRET not in repr(service)


def test_from_settings(db):
    class FakeSettings:
        jwt_issuer, jwt_audience, access_token_ttl, secret_key = "iss-x", "aud-x", 300, SECRET

    built = TokenService.from_settings(FakeSettings, db)
    assert (built.issuer, built.audience, built.ttl) == ("iss-x", "aud-x", 300)
    token = built.issue(subject="u", org_id=None, roles=[], facilities=[])
    assert token.expires_in == 300
    assert built.verify(token.access_token)["aud"] == "aud-x"


# -- properties -----------------------------------------------------------------------------

_header_values = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20),
                           st.sampled_from(["EdDSA", "none", "HS256", "at+jwt", "JWT", "abc_DEF-123"]),
                           st.lists(st.text(max_size=5), max_size=3))
_headers = st.dictionaries(st.sampled_from(["alg", "typ", "kid", "jku", "crit", "b64", "x"]) | st.text(max_size=5),
                           _header_values, max_size=5)
_tokens = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300),
    st.builds(lambda h, p, s: f"{b64(h)}.{p}.{s}", _headers, st.text(max_size=40), st.text(max_size=40)),
    st.builds(lambda h, p, s: f"{b64(h)}.{b64(p)}.{b64(s)}", _headers, _headers, st.binary(max_size=64)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=_tokens)
def test_any_input_raises_invalid_token_and_nothing_else(service, kid, token):
    with pytest.raises(InvalidToken):
        service.verify(token)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_mutation_of_a_real_token_is_rejected(service, kid, data):
    token = service.issue(subject="u", org_id="o", roles=["requester"], facilities=[]).access_token
    position = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.characters(codec="ascii"))
    mutated = token[:position] + replacement + token[position + 1:]
    if mutated == token:
        return
    with pytest.raises(InvalidToken):
        service.verify(mutated)


# -- OIDC -----------------------------------------------------------------------------------

OIDC_ISSUER = "https://idp.example/realms/gateway"
OIDC_AUDIENCE = "records-gateway-api"


class _JwksHandler(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, bytes]] = {}

    def do_GET(self):
        body = self.routes.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def idp():
    """A tiny identity provider: an RSA and an EC key published as a JWKS over HTTP on loopback."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_jwk = dict(RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True), kid="rsa-1", alg="RS256", use="sig")
    ec_jwk = dict(ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True), kid="ec-1", use="sig")
    handler = type("Handler", (_JwksHandler,), {"routes": {
        "/jwks": json.dumps({"keys": [rsa_jwk, ec_jwk]}).encode(),
        "/garbage": b"<html>this is not a key set</html>",
        "/list": b"[1, 2, 3]",
        "/empty": b'{"keys": []}',
        "/weird": b'{"keys": [{"kty": "RSA", "kid": "rsa-1", "n": "!!", "e": "AQAB"}]}',
    }})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    class Idp:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        rsa, ec = rsa_key, ec_key

        @staticmethod
        def claims(**changes):
            now = int(time.time())
            claims = {"iss": OIDC_ISSUER, "aud": OIDC_AUDIENCE, "sub": "ext-user", "exp": now + 300,
                      "iat": now, "email": "a@example.com"}
            claims.update(changes)
            return {k: v for k, v in claims.items() if v is not ...}

    yield Idp
    server.shutdown()
    server.server_close()


def oidc(idp, path="/jwks", **options) -> OidcVerifier:
    return OidcVerifier(issuer=OIDC_ISSUER, audience=OIDC_AUDIENCE, jwks_url=idp.base + path, **options)


def test_oidc_token_with_right_issuer_and_audience_verifies(idp):
    verifier = oidc(idp)
    token = jwt.encode(idp.claims(), idp.rsa, algorithm="RS256", headers={"kid": "rsa-1"})
    claims = verifier.verify(token)
    assert claims["sub"] == "ext-user" and claims["iss"] == OIDC_ISSUER
    es_token = jwt.encode(idp.claims(), idp.ec, algorithm="ES256", headers={"kid": "ec-1", "typ": "at+jwt"})
    assert verifier.verify(es_token)["sub"] == "ext-user"


@pytest.mark.parametrize("changes", [{"aud": "someone-else"}, {"iss": "https://evil.example"},
                                     {"exp": 1000}, {"sub": ...}, {"iat": ...}, {"exp": ...},
                                     {"iat": int(time.time()) + 3600}])
def test_oidc_token_with_wrong_claims_is_rejected(idp, changes):
    token = jwt.encode(idp.claims(**changes), idp.rsa, algorithm="RS256", headers={"kid": "rsa-1"})
    with pytest.raises(InvalidToken) as excinfo:
        oidc(idp).verify(token)
    assert reason(excinfo) == "rejected"


def test_oidc_unreachable_jwks_is_rejected(idp):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    verifier = OidcVerifier(issuer=OIDC_ISSUER, audience=OIDC_AUDIENCE, jwks_url=f"http://127.0.0.1:{port}/jwks")
    token = jwt.encode(idp.claims(), idp.rsa, algorithm="RS256", headers={"kid": "rsa-1"})
    with pytest.raises(InvalidToken) as excinfo:
        verifier.verify(token)
    assert reason(excinfo) == "jwks_unavailable"
    started = time.monotonic()
    with pytest.raises(InvalidToken):
        verifier.verify(token)  # backs off instead of trying again at once
    assert time.monotonic() - started < 0.5


def test_oidc_silent_jwks_times_out_into_a_rejection(idp):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # accepts the connection, never answers
        port = silent.getsockname()[1]
        verifier = OidcVerifier(issuer=OIDC_ISSUER, audience=OIDC_AUDIENCE,
                                jwks_url=f"http://127.0.0.1:{port}/jwks", timeout=0.3)
        token = jwt.encode(idp.claims(), idp.rsa, algorithm="RS256", headers={"kid": "rsa-1"})
        with pytest.raises(InvalidToken) as excinfo:
            verifier.verify(token)
    assert reason(excinfo) == "jwks_unavailable"


@pytest.mark.parametrize("path", ["/garbage", "/list", "/empty", "/weird", "/missing"])
def test_oidc_garbage_jwks_is_rejected(idp, path):
    token = jwt.encode(idp.claims(), idp.rsa, algorithm="RS256", headers={"kid": "rsa-1"})
    with pytest.raises(InvalidToken) as excinfo:
        oidc(idp, path).verify(token)
    assert reason(excinfo) in {"jwks_unavailable", "unknown_kid"}


def test_oidc_hs256_token_is_rejected(idp):
    pem = idp.rsa.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    for secret in (pem, b"shared-secret"):
        token = forge({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, idp.claims(),
                      lambda data, s=secret: hmac.new(s, data, hashlib.sha256).digest())
        with pytest.raises(InvalidToken) as excinfo:
            oidc(idp).verify(token)
        assert reason(excinfo) == "alg"


def test_oidc_alg_must_match_the_published_key(idp):
    # Header says ES256 but names the RSA key: pyjwt binds the key's own algorithm.
    token = jwt.encode(idp.claims(), idp.ec, algorithm="ES256", headers={"kid": "rsa-1"})
    with pytest.raises(InvalidToken):
        oidc(idp).verify(token)


@pytest.mark.parametrize("header", [{"jku": "http://127.0.0.1:1/jwks"}, {"x5u": "https://a.example/c"},
                                    {"crit": ["exp"]}, {"x5c": ["AAAA"]}, {"kid": "../../etc/passwd"},
                                    {"typ": "dpop+jwt"}, {"alg": "none"}])
def test_oidc_header_rules(idp, header):
    base = {"alg": "RS256", "typ": "JWT", "kid": "rsa-1"}
    base.update(header)
    token = forge(base, idp.claims(), lambda data: b"\x00" * 256)
    with pytest.raises(InvalidToken) as excinfo:
        oidc(idp).verify(token)
    assert reason(excinfo) in {"header", "kid", "typ", "alg"}


def test_oidc_embedded_jwk_is_rejected(idp):
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    embedded = RSAAlgorithm.to_jwk(attacker.public_key(), as_dict=True)
    token = jwt.encode(idp.claims(), attacker, algorithm="RS256", headers={"kid": "rsa-1", "jwk": embedded})
    with pytest.raises(InvalidToken) as excinfo:
        oidc(idp).verify(token)
    assert reason(excinfo) == "header"


def test_oidc_unknown_kid_is_rejected(idp):
    token = jwt.encode(idp.claims(), idp.rsa, algorithm="RS256", headers={"kid": "rsa-2"})
    with pytest.raises(InvalidToken) as excinfo:
        oidc(idp).verify(token)
    assert reason(excinfo) == "unknown_kid"


@pytest.mark.parametrize("options", [{"algorithms": ("HS256",)}, {"algorithms": ("RS256", "none")},
                                     {"algorithms": ()}, {"jwks_url": "http://idp.example/jwks"},
                                     {"jwks_url": "file:///etc/passwd"}, {"audience": ""}])
def test_oidc_refuses_unsafe_configuration(idp, options):
    kwargs = {"issuer": OIDC_ISSUER, "audience": OIDC_AUDIENCE, "jwks_url": idp.base + "/jwks"}
    kwargs.update(options)
    with pytest.raises(ValueError):
        OidcVerifier(**kwargs)


def test_oidc_from_settings():
    class Unset:
        oidc_issuer = oidc_audience = oidc_jwks_url = None

    class NoAudience:
        oidc_issuer, oidc_audience, oidc_jwks_url = OIDC_ISSUER, None, "https://idp.example/jwks"

    class Full:
        oidc_issuer, oidc_audience, oidc_jwks_url = OIDC_ISSUER, OIDC_AUDIENCE, "https://idp.example/jwks"

    assert OidcVerifier.from_settings(Unset) is None
    with pytest.raises(ValueError):
        OidcVerifier.from_settings(NoAudience)
    assert OidcVerifier.from_settings(Full).audience == OIDC_AUDIENCE


@settings(max_examples=200, deadline=None)
@given(token=_tokens)
def test_oidc_any_input_raises_invalid_token_and_nothing_else(idp, token):
    with pytest.raises(InvalidToken):
        oidc(idp).verify(token)


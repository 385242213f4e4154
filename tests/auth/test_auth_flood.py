"""A flood of bad bearer credentials from one address: 429 before any work, valid credentials still answered,
and the audit trail growing by a handful of entries, not one per attempt.

These run the production defaults for failed bearer credentials (the session app lifts them, since the whole
suite comes from 127.0.0.1), each test from an address of its own so Redis state from other tests (and the
other database's run) cannot interfere.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import secrets
import string
import time
import uuid
from contextlib import contextmanager

import jwt
import pytest
import time_machine
from cryptography.hazmat.primitives.asymmetric import ed25519
from limits import parse
from sqlalchemy import event, func, select

from gateway.app import create_app
from gateway.audit.models import AuditEvent
from gateway.settings import Settings
from tests.factories import PASSWORD, bearer, make_tenant

DEFAULTS = {f.name: f.default for f in dataclasses.fields(Settings) if f.name.startswith("bearer_")}
LIMIT = parse(DEFAULTS["bearer_failure_rate_limit"]).amount
FIRST = DEFAULTS["bearer_failure_audit_first"]
WINDOW = DEFAULTS["bearer_failure_audit_window"]


def _address() -> str:
    return ipaddress.ip_address(f"2001:db8::{secrets.randbelow(0xffff):x}:{secrets.randbelow(0xffff):x}").compressed


@pytest.fixture
def flood_app(settings):
    app = create_app(dataclasses.replace(settings, **DEFAULTS))
    app.config["TESTING"] = False
    yield app
    app.extensions["gateway"].db.dispose()


def _client(app, address: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def bad_credentials(count: int) -> list[str]:
    """A mix of malformed API keys, well-formed unknown ones, and bad JWTs of several kinds."""
    attacker = ed25519.Ed25519PrivateKey.generate()
    lower, mixed = string.ascii_lowercase + string.digits, string.ascii_letters + string.digits
    now = int(time.time())
    kinds = [
        lambda i: f"rgw_short_{i}",
        lambda i: "rgw_" + "".join(secrets.choice(lower) for _ in range(16)) + "_"
        + "".join(secrets.choice(mixed) for _ in range(40)),
        lambda i: jwt.encode({"sub": str(uuid.uuid4()), "iat": now, "exp": now + 300}, attacker, algorithm="EdDSA",
                             headers={"kid": f"attacker-{i}", "typ": "at+jwt"}),
        lambda i: f"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ7aX0ifQ.{i}",
        lambda i: f"not-a-token-{i}",
    ]
    return [kinds[i % len(kinds)](i) for i in range(count)]


def _entries(db, address: str, action: str | None = None) -> list[AuditEvent]:
    query = select(AuditEvent).where(AuditEvent.ip == address).order_by(AuditEvent.seq)
    if action:
        query = query.where(AuditEvent.action == action)
    with db.transaction() as session:
        return list(session.scalars(query))


def _audit_size(db) -> int:
    with db.transaction() as session:
        return session.scalar(select(func.count()).select_from(AuditEvent))


@contextmanager
def _window_start():
    """Start at the beginning of an audit window (a few seconds ahead at most), so a flood fits in one."""
    start = (int(time.time()) // WINDOW + 1) * WINDOW + 0.01
    with time_machine.travel(start, tick=True) as traveller:
        yield traveller


def test_a_flood_is_refused_before_work_while_known_credentials_still_answer(flood_app, db):
    address = _address()
    client = _client(flood_app, address)
    tenant = make_tenant(db)
    with _window_start() as traveller:
        # Both authenticated before the flood: the key by using it, the token by being issued.
        assert client.get("/v1/me", headers=bearer(tenant.api_key)).status_code == 200
        issued = client.post("/v1/auth/token", json={"email": tenant.admin_email, "password": PASSWORD})
        token = issued.get_json()["access_token"]
        audit_before = len(_entries(db, address))
        statuses, during = [], []
        for i, credential in enumerate(bad_credentials(400)):
            statuses.append(client.get("/v1/me", headers=bearer(credential)).status_code)
            if i % 50 == 49:
                during.append(client.get("/v1/me", headers=bearer(tenant.api_key)).status_code)
                during.append(client.get("/v1/me", headers=bearer(token)).status_code)
        assert statuses[:LIMIT] == [401] * LIMIT, statuses[:LIMIT]
        assert set(statuses[LIMIT:]) == {429}, statuses
        assert during == [200] * len(during)

        refused = client.get("/v1/me", headers=bearer("rgw_short_again"))
        assert refused.status_code == 429 and refused.mimetype == "application/problem+json"
        assert refused.get_json()["code"] == "RATE_LIMITED"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert client.get("/v1/me", headers=bearer(tenant.api_key)).status_code == 200
        # A key created now, and a token issued now, work at once from the same address.
        created = client.post(f"/v1/orgs/{tenant.org_id}/api-keys", headers=bearer(token),
                              json={"scopes": ["requests:read"]})
        assert client.get("/v1/me", headers=bearer(created.get_json()["key"])).status_code == 200
        again = client.post("/v1/auth/token", json={"email": tenant.requester_email, "password": PASSWORD})
        assert client.get("/v1/me", headers=bearer(again.get_json()["access_token"])).status_code == 200
        # Another address is not affected.
        assert _client(flood_app, _address()).get("/v1/me", headers=bearer("rgw_short_x")).status_code == 401

        # 401 attempts were the first LIMIT; of them only the first FIRST got an entry each.
        denied = _entries(db, address, "auth.credential")
        assert len(denied) == FIRST
        grown = len(_entries(db, address)) - audit_before
        # FIRST singly, then api_key.create and auth.login: nothing per attempt.
        assert grown == FIRST + 2, grown

        # Once the window is over, the next failure writes the rest as one entry with its count.
        traveller.shift(WINDOW + 1)
        assert client.get("/v1/me", headers=bearer("rgw_short_after")).status_code == 401
    (aggregate,) = _entries(db, address, "auth.failed_bearer.aggregate")
    counted = 400 + 1 - FIRST  # every later 401 and every 429, none left out
    assert aggregate.object_type == "failed_bearer"
    assert aggregate.object_id.startswith(f"count:{counted} window:")
    assert aggregate.object_id.endswith(f"/{WINDOW}s")
    assert aggregate.actor == "anonymous" and aggregate.result == "denied"
    # Nothing of any credential is stored, only counts.
    for entry in _entries(db, address):
        assert "rgw_" not in " ".join(str(v) for v in vars(entry).values())


def test_over_the_limit_a_bad_credential_costs_no_lookup_no_signature_check_no_query(flood_app, db, monkeypatch):
    address = _address()
    client = _client(flood_app, address)
    tenant = make_tenant(db)
    assert client.get("/v1/me", headers=bearer(tenant.api_key)).status_code == 200
    for credential in bad_credentials(LIMIT):
        assert client.get("/v1/me", headers=bearer(credential)).status_code == 401

    from gateway.auth import web

    calls = {"lookup": 0, "verify": 0}
    lookup, tokens = web.authenticate_api_key_with_org, flood_app.extensions["gateway.auth"].tokens
    verify = tokens.verify

    def counting_lookup(*args, **kwargs):
        calls["lookup"] += 1
        return lookup(*args, **kwargs)

    def counting_verify(*args, **kwargs):
        calls["verify"] += 1
        return verify(*args, **kwargs)

    monkeypatch.setattr(web, "authenticate_api_key_with_org", counting_lookup)
    monkeypatch.setattr(tokens, "verify", counting_verify)
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        statements.append(statement)

    engine = flood_app.extensions["gateway"].db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        for credential in bad_credentials(5):  # one of each kind
            statements.clear()
            response = client.get("/v1/me", headers=bearer(credential))
            assert response.status_code == 429
            assert statements == [], (credential[:12], statements)
        assert calls == {"lookup": 0, "verify": 0}
        # The known key from the same address is looked up and answered as usual.
        statements.clear()
        assert client.get("/v1/me", headers=bearer(tenant.api_key)).status_code == 200
        assert statements and calls["lookup"] == 1
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_the_aggregate_is_written_after_the_window_by_an_authenticated_request(flood_app, db):
    address = _address()
    client = _client(flood_app, address)
    tenant = make_tenant(db)
    with _window_start() as traveller:
        assert client.get("/v1/me", headers=bearer(tenant.api_key)).status_code == 200
        statuses = [client.get("/v1/me", headers=bearer(c)).status_code for c in bad_credentials(LIMIT + 10)]
        assert statuses.count(401) == LIMIT and statuses.count(429) == 10
        assert _entries(db, address, "auth.failed_bearer.aggregate") == []
        traveller.shift(WINDOW + 1)
        assert client.get("/v1/me", headers=bearer(tenant.api_key)).status_code == 200
    (aggregate,) = _entries(db, address, "auth.failed_bearer.aggregate")
    assert aggregate.object_id.startswith(f"count:{LIMIT + 10 - FIRST} ")
    assert len(_entries(db, address, "auth.credential")) == FIRST


def test_a_revoked_key_is_no_longer_let_through_once_it_fails(flood_app, db):
    address = _address()
    client = _client(flood_app, address)
    tenant = make_tenant(db)
    admin = client.post("/v1/auth/token", json={"email": tenant.admin_email, "password": PASSWORD}).get_json()
    assert client.get("/v1/me", headers=bearer(tenant.api_key)).status_code == 200
    for credential in bad_credentials(LIMIT):
        client.get("/v1/me", headers=bearer(credential))
    assert client.delete(f"/v1/orgs/{tenant.org_id}/api-keys/{tenant.api_key_id}",
                         headers=bearer(admin["access_token"])).status_code == 204
    # Known good a moment ago, so it is checked (and fails); from then on it is one more unknown credential.
    assert client.get("/v1/me", headers=bearer(tenant.api_key)).status_code == 401
    assert client.get("/v1/me", headers=bearer(tenant.api_key)).status_code == 429


def test_requests_without_a_credential_are_audited_together_but_not_limited(flood_app, db):
    address = _address()
    client = _client(flood_app, address)
    with _window_start():
        statuses = [client.get("/v1/me").status_code for _ in range(LIMIT + 5)]
    assert statuses == [401] * (LIMIT + 5)  # nothing was looked up, so there is nothing to limit
    assert len(_entries(db, address, "auth.credential")) == FIRST


@pytest.mark.slow
def test_while_redis_is_down_the_limit_holds_in_memory_and_intake_goes_on(flood_app, db, redis_service):
    address = _address()
    client = _client(flood_app, address)
    tenant = make_tenant(db)
    assert client.get("/v1/me", headers=bearer(tenant.api_key)).status_code == 200
    audit_before = _audit_size(db)
    redis_service.stop()
    try:
        with _window_start():
            statuses = [client.get("/v1/me", headers=bearer(c)).status_code for c in bad_credentials(LIMIT + 30)]
            assert statuses[:LIMIT] == [401] * LIMIT and set(statuses[LIMIT:]) == {429}
            assert client.get("/v1/me", headers=bearer(tenant.api_key)).status_code == 200
            assert _audit_size(db) - audit_before == FIRST
    finally:
        redis_service.start()

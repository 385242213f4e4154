"""Sign-in lockouts per account and per address, and per-principal rate limits shared through Redis."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.app import create_app
from tests.factories import PASSWORD, bearer, make_tenant


def _login(client, email, password, ip="203.0.113.7"):
    return client.post("/v1/auth/token", json={"email": email, "password": password},
                       environ_base={"REMOTE_ADDR": ip})


def test_token_response_shape(client, db):
    tenant = make_tenant(db)
    body = _login(client, tenant.admin_email, PASSWORD, ip="198.51.100.1").get_json()
    assert body["token_type"] == "Bearer" and 60 <= body["expires_in"] <= 900 and body["access_token"]


def test_account_lockout_after_repeated_failures(client, db, settings):
    tenant = make_tenant(db)
    for _ in range(settings.login_max_failures):
        response = _login(client, tenant.requester_email, "wrong password!!", ip="198.51.100.2")
        assert response.status_code == 401
    locked = _login(client, tenant.requester_email, PASSWORD, ip="198.51.100.3")
    assert locked.status_code == 429
    assert locked.mimetype == "application/problem+json"
    assert locked.get_json()["code"] == "LOGIN_LOCKED"
    assert 0 < int(locked.headers["Retry-After"]) <= settings.login_lockout_seconds + 1
    # Another account is not affected by this one's lock.
    assert _login(client, tenant.admin_email, PASSWORD, ip="198.51.100.3").status_code == 200


def test_address_lockout_across_accounts(client, db, settings):
    ip = "198.51.100.99"
    attempts = settings.login_max_failures * 4
    for i in range(attempts):
        response = _login(client, f"nobody-{i}@example.test", "wrong password!!", ip=ip)
        assert response.status_code == 401, i
    tenant = make_tenant(db)
    assert _login(client, tenant.admin_email, PASSWORD, ip=ip).status_code == 429
    assert _login(client, tenant.admin_email, PASSWORD, ip="198.51.100.100").status_code == 200


def test_unknown_and_wrong_password_look_the_same(client, db):
    tenant = make_tenant(db)
    a = _login(client, "nobody-at-all@example.test", PASSWORD, ip="198.51.100.5")
    b = _login(client, tenant.admin_email, "not the password", ip="198.51.100.5")
    strip = lambda r: {k: v for k, v in r.get_json().items() if k != "request_id"}
    assert a.status_code == b.status_code == 401 and strip(a) == strip(b)


def test_rate_limit_holds_across_workers_sharing_redis(settings, db):
    """Two app instances stand for two gunicorn workers; the limit is shared through Redis."""
    limited = dataclasses.replace(settings, api_rate_limit="6 per minute")
    worker_1, worker_2 = create_app(limited).test_client(), create_app(limited).test_client()
    tenant = make_tenant(db)
    statuses = [(worker_1 if i % 2 else worker_2).get("/v1/me", headers=bearer(tenant.api_key)).status_code
                for i in range(8)]
    assert statuses[:6] == [200] * 6 and statuses[6:] == [429, 429], statuses
    response = worker_1.get("/v1/me", headers=bearer(tenant.api_key))
    assert response.mimetype == "application/problem+json" and response.get_json()["code"] == "RATE_LIMITED"
    assert int(response.headers["Retry-After"]) > 0
    # Limits are per principal: another organization's key is unaffected.
    other = make_tenant(db)
    assert worker_1.get("/v1/me", headers=bearer(other.api_key)).status_code == 200
    # Health probes are never limited.
    assert all(worker_1.get("/healthz").status_code == 200 for _ in range(10))


@pytest.mark.slow
def test_api_keeps_working_when_redis_is_down(settings, db, redis_service):
    """The limiter falls back to memory: a Redis outage must not stop intake."""
    app = create_app(settings)
    client = app.test_client()
    tenant = make_tenant(db)
    redis_service.stop()
    try:
        assert client.get("/v1/me", headers=bearer(tenant.api_key)).status_code == 200
    finally:
        redis_service.start()


def test_sign_in_attempts_are_limited_per_address(settings, db):
    """Beyond the per-account lockout, one address gets a bounded number of sign-in attempts."""
    app = create_app(dataclasses.replace(settings, sign_in_rate_limit="3 per minute"))
    client = app.test_client()
    statuses = [_login(client, f"someone-{i}@example.test", "wrong password!!", ip="198.51.100.77").status_code
                for i in range(5)]
    assert statuses[:3] == [401, 401, 401] and statuses[3:] == [429, 429]
    response = _login(client, "x@example.test", "wrong password!!", ip="198.51.100.77")
    assert response.get_json()["code"] == "RATE_LIMITED" and int(response.headers["Retry-After"]) > 0

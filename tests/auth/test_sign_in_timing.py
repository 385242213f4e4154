"""Sign-in takes the same work whether or not the e-mail has an account, and whether or not it is locked.

A ratio of medians of interleaved attempts in one run (not a wall-clock figure): each attempt costs one
Argon2 verification, against the account's hash or a dummy with the same parameters.  The lockouts are
lifted for the app that measures, so the per-account and per-address counters do not turn the attempts
being compared into something else halfway through.
"""

from __future__ import annotations

import dataclasses
import secrets
import statistics
import time
import uuid

import pytest

from gateway.app import create_app
from gateway.auth import passwords
from tests.factories import PASSWORD, make_tenant

ROUNDS = 22  # the first two of each are a warm-up
MAX_RATIO = 1.5

# Argon2 work, which no database changes.
pytestmark = pytest.mark.one_database


def _address() -> str:
    return f"2001:db8::{secrets.randbelow(0xffff):x}:{secrets.randbelow(0xffff):x}"


@pytest.fixture
def timing_client(settings):
    # Production's Argon2 cost (the suite's apps use the least): the hashes compared are the real work.
    app = create_app(dataclasses.replace(settings, login_max_failures=1_000_000, password_hash_profile="rfc9106"))
    app.config["TESTING"] = False
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = _address()
    yield client
    app.extensions["gateway"].db.dispose()
    passwords.prepare(settings.password_hash_profile)  # the hasher is per process: back to the suite's


def _timed(client, email: str, password: str, status: int) -> float:
    started = time.perf_counter()
    response = client.post("/v1/auth/token", json={"email": email, "password": password})
    elapsed = time.perf_counter() - started
    assert response.status_code == status, response.get_json()
    return elapsed


def _ratio(client, a, b) -> tuple[float, float, float]:
    """Interleave attempts a and b (alternating which goes first); (ratio of medians, median a, median b)."""
    times_a, times_b = [], []
    for round_ in range(ROUNDS):
        pair = [(a, times_a), (b, times_b)]
        for attempt, times in (pair if round_ % 2 else reversed(pair)):
            times.append(attempt())
    median_a, median_b = statistics.median(times_a[2:]), statistics.median(times_b[2:])
    return max(median_a, median_b) / min(median_a, median_b), median_a, median_b


def test_known_and_unknown_emails_take_the_same_time(timing_client, db, capsys):
    tenant = make_tenant(db)
    ratio, known, unknown = _ratio(
        timing_client,
        lambda: _timed(timing_client, tenant.admin_email, "not the password!", 401),
        lambda: _timed(timing_client, f"nobody-{uuid.uuid4().hex}@example.test", "not the password!", 401))
    with capsys.disabled():
        print(f"\nsign-in known {known * 1000:.1f} ms, unknown {unknown * 1000:.1f} ms, ratio {ratio:.2f}")
    assert ratio <= MAX_RATIO


def test_a_locked_account_answers_in_the_time_of_a_wrong_password(timing_client, client, db, settings, capsys):
    locked, other = make_tenant(db), make_tenant(db)
    address = {"REMOTE_ADDR": _address()}
    for _ in range(settings.login_max_failures):  # the real lockout, with the session app's default policy
        client.post("/v1/auth/token", json={"email": locked.admin_email, "password": "not the password!"},
                    environ_base=address)
    ratio, when_locked, wrong = _ratio(
        timing_client,
        # Even the right password gets the lockout answer, in the time any wrong password takes.
        lambda: _timed(timing_client, locked.admin_email, PASSWORD, 429),
        lambda: _timed(timing_client, other.admin_email, "not the password!", 401))
    with capsys.disabled():
        print(f"\nsign-in locked {when_locked * 1000:.1f} ms, wrong password {wrong * 1000:.1f} ms, "
              f"ratio {ratio:.2f}")
    assert ratio <= MAX_RATIO


def test_every_sign_in_path_costs_one_argon2_verification_with_the_same_parameters(app, db, settings, monkeypatch):
    """Unknown, inactive, locked, wrong and right: one verification each, on the API and on the portal."""
    import argon2._password_hasher as hasher_module

    from gateway.auth.models import User
    from tests.portal.helpers import csrf_of, portal_client

    tenant, locked = make_tenant(db), make_tenant(db)
    with db.transaction() as session:
        session.get(User, tenant.requester_id).active = False
    client = portal_client(app)
    client.environ_base["REMOTE_ADDR"] = _address()
    for _ in range(settings.login_max_failures):
        client.post("/v1/auth/token", json={"email": locked.admin_email, "password": "not the password!"})

    verified: list[str] = []
    real = hasher_module.verify_secret

    def counting(hash_, secret, type_):
        verified.append(hash_.rsplit(b"$", 2)[0].decode())  # algorithm, version and cost parameters only
        return real(hash_, secret, type_)

    monkeypatch.setattr(hasher_module, "verify_secret", counting)

    def api(email, password):
        return client.post("/v1/auth/token", json={"email": email, "password": password}).status_code

    def portal(email, password):
        page = client.get("/portal/sign-in")
        return client.post("/portal/sign-in", data={"email": email, "password": password,
                                                    "csrf_token": csrf_of(page.get_data(as_text=True))}).status_code

    cases = {
        "unknown": (f"nobody-{uuid.uuid4().hex}@example.test", PASSWORD, 401),
        "inactive": (tenant.requester_email, PASSWORD, 401),
        "locked": (locked.admin_email, PASSWORD, 429),
        "wrong password": (tenant.admin_email, "not the password!", 401),
        "right password": (tenant.admin_email, PASSWORD, {"api": 200, "portal": 303}),
    }
    for channel, attempt in (("api", api), ("portal", portal)):
        for name, (email, password, status) in cases.items():
            verified.clear()
            expected = status[channel] if isinstance(status, dict) else status
            assert attempt(email, password) == expected, (channel, name)
            assert len(verified) == 1, (channel, name, verified)
            # The parameters the app hashes passwords with (the suite's profile; production's in the test above).
            assert verified[0] == passwords.hash_password("x" * 12).rsplit("$", 2)[0], (channel, name)

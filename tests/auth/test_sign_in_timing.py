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
from tests.factories import PASSWORD, make_tenant

ROUNDS = 22  # the first two of each are a warm-up
MAX_RATIO = 1.5


def _address() -> str:
    return f"2001:db8::{secrets.randbelow(0xffff):x}:{secrets.randbelow(0xffff):x}"


@pytest.fixture
def timing_client(settings):
    app = create_app(dataclasses.replace(settings, login_max_failures=1_000_000))
    app.config["TESTING"] = False
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = _address()
    yield client
    app.extensions["gateway"].db.dispose()


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

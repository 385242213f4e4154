"""Changes to one request are serialized (issue 12): real requests raced from threads against gunicorn with four
worker processes, on SQLite and PostgreSQL.

Each round fires two calls at the same instant (a barrier) and then checks what the database holds:
- PATCH adding psychotherapy notes without their consent, racing submit: a request that got past submit holds
  exactly the body the rules passed (never the notes);
- two clerks claiming one request: exactly one owner;
- a requester cancelling while a clerk claims: exactly one of them wins.
In every round: no 5xx, and `version` counts every successful change (no lost update).
"""

from __future__ import annotations

import io
import threading

import pytest
import requests as http
from sqlalchemy import select

from gateway.adapters import build_redis
from gateway.intake.models import RecordsRequest
from gateway.routing import relay
from gateway.routing.dispatch import RqDispatcher
from tests import samples
from tests.factories import bearer, make_tenant, make_user, request_body

ROUNDS = 20
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(start_gateway):
    """The gateway under gunicorn with four worker processes (changes really run in parallel)."""
    return start_gateway(workers=4, api_rate_limit="100000 per minute")


@pytest.fixture(scope="module")
def firm(db):
    return make_tenant(db, "law_firm")


def token_for(server, email: str) -> dict:
    response = http.post(f"{server.url}/v1/auth/token", json={"email": email,
                                                               "password": "correct horse battery staple"}, timeout=30)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture(scope="module")
def clerks(server, db):
    return [token_for(server, make_user(db, ["facility_staff"], ["tufts-mc"])) for _ in range(2)]


def race(*calls):
    """Run the calls at the same instant from threads; their responses in order."""
    barrier, results = threading.Barrier(len(calls)), [None] * len(calls)

    def run(index, call):
        with http.Session() as session:
            barrier.wait()
            results[index] = call(session)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def draft(server, firm) -> str:
    headers = bearer(firm.api_key)
    created = http.post(f"{server.url}/v1/requests", json=request_body("tufts-mc"), headers=headers, timeout=30)
    assert created.status_code == 201, created.text
    request_id = created.json()["id"]
    uploaded = http.post(f"{server.url}/v1/requests/{request_id}/documents", headers=headers, timeout=60,
                         files={"file": ("auth.pdf", io.BytesIO(samples.minimal_pdf()), "application/pdf")},
                         data={"kind": "authorization"})
    assert uploaded.status_code == 201, uploaded.text
    return request_id


def routed(server, firm, db, settings) -> str:
    request_id = draft(server, firm)
    assert http.post(f"{server.url}/v1/requests/{request_id}/submit", headers=bearer(firm.api_key),
                     timeout=30).status_code == 202
    dispatcher = RqDispatcher(build_redis(settings))
    while relay.publish_due(db, dispatcher, batch=100).done:
        pass
    return request_id


def stored(db, request_id: str) -> RecordsRequest:
    with db.transaction() as session:
        return session.scalars(select(RecordsRequest).where(RecordsRequest.id == request_id)).one()


def no_server_errors(*responses) -> None:
    assert all(r.status_code < 500 for r in responses), [(r.status_code, r.text[:300]) for r in responses]


def test_patch_racing_submit_never_routes_a_body_the_rules_did_not_check(server, firm, db):
    headers = bearer(firm.api_key)
    outcomes = []
    patch = {"records": {"types": ["visit_notes", "psychotherapy_notes"]}}  # no specific consent: deficient
    for _ in range(ROUNDS):
        request_id = draft(server, firm)
        version_before = stored(db, request_id).version
        patched, submitted_ = race(
            lambda s, rid=request_id: s.patch(f"{server.url}/v1/requests/{rid}", json=patch, headers=headers,
                                              timeout=60),
            lambda s, rid=request_id: s.post(f"{server.url}/v1/requests/{rid}/submit", headers=headers, timeout=60))
        no_server_errors(patched, submitted_)
        row = stored(db, request_id)
        if submitted_.status_code == 202:
            assert row.status == "submitted" and "psychotherapy_notes" not in row.records["types"]
            assert patched.status_code == 409 and patched.json()["code"] == "REQUEST_NOT_EDITABLE"
            outcomes.append("submit first")
        else:
            assert submitted_.status_code == 422 and submitted_.json()["code"] == "REQUEST_DEFICIENT"
            assert patched.status_code == 200 and row.status == "draft"
            assert "psychotherapy_notes" in row.records["types"]
            outcomes.append("patch first")
        successes = sum(r.status_code < 300 for r in (patched, submitted_))
        assert row.version == version_before + successes
    print(f"PATCH vs submit, {ROUNDS} rounds: {outcomes.count('submit first')} submit first, "
          f"{outcomes.count('patch first')} patch first")


def test_two_clerks_claiming_at_once_never_both_own_it(server, firm, db, settings, clerks):
    first, second = clerks
    winners = []
    for _ in range(ROUNDS):
        request_id = routed(server, firm, db, settings)
        version_before = stored(db, request_id).version
        one, two = race(*(lambda s, h=h, rid=request_id: s.post(f"{server.url}/v1/requests/{rid}/claim", headers=h,
                                                                 timeout=60) for h in (first, second)))
        no_server_errors(one, two)
        assert sorted((one.status_code, two.status_code)) == [200, 409], (one.text, two.text)
        loser = one if one.status_code == 409 else two
        assert loser.json()["code"] == "INVALID_TRANSITION"
        winner = one if one.status_code == 200 else two
        row = stored(db, request_id)
        assert row.status == "in_progress" and row.assigned_to == winner.json()["assigned_to"]
        assert row.version == version_before + 1
        winners.append(0 if winner is one else 1)
    print(f"claim vs claim, {ROUNDS} rounds: first clerk won {winners.count(0)}, second {winners.count(1)}")


def test_cancel_racing_claim_lets_exactly_one_win(server, firm, db, settings, clerks):
    clerk = clerks[0]
    outcomes = []
    for _ in range(ROUNDS):
        request_id = routed(server, firm, db, settings)
        version_before = stored(db, request_id).version
        cancelled, claimed = race(
            lambda s, rid=request_id: s.post(f"{server.url}/v1/requests/{rid}/cancel", headers=bearer(firm.api_key),
                                             json={"reason": "duplicate"}, timeout=60),
            lambda s, rid=request_id: s.post(f"{server.url}/v1/requests/{rid}/claim", headers=clerk, timeout=60))
        no_server_errors(cancelled, claimed)
        assert sorted((cancelled.status_code, claimed.status_code)) == [200, 409], (cancelled.text, claimed.text)
        row = stored(db, request_id)
        assert row.status == ("cancelled" if cancelled.status_code == 200 else "in_progress")
        assert row.version == version_before + 1
        outcomes.append(row.status)
    print(f"cancel vs claim, {ROUNDS} rounds: {outcomes.count('cancelled')} cancelled, "
          f"{outcomes.count('in_progress')} claimed")

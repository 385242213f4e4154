"""Two-step sign-in (TOTP, RFC 6238): enrolment, sign-in with codes, replay, recovery codes, lockout, the setting.

Codes are computed with pyotp for the instant the clock is frozen at (time_machine), never for the wall
clock: a test must not depend on where in its 30-second step it happens to run.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime

import pyotp
import pytest
import time_machine
from sqlalchemy import select

from gateway.app import create_app
from gateway.audit.models import AuditEvent
from gateway.auth import mfa
from gateway.settings import Settings
from tests.factories import PASSWORD, bearer, make_tenant, make_user, sign_in
from tests.portal.helpers import csrf_of, portal_client

# One database (tests/conftest.py): TOTP enrolment and checks; PostgreSQL is where the one-use row lock means something.
pytestmark = pytest.mark.one_database

STEP = 30


def _step_start(steps_ahead: int = 2) -> int:
    """The first second of a 30-second step a little ahead of now (frozen there, tokens stay fresh)."""
    return (int(time.time()) // STEP + steps_ahead) * STEP


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _token(client, email, otp=None, password=PASSWORD):
    body = {"email": email, "password": password} | ({"otp": otp} if otp is not None else {})
    return client.post("/v1/auth/token", json=body)


def _enable(client, email) -> dict:
    """Enrol and confirm at the current (frozen) instant; returns the enrolment body."""
    headers = sign_in(client, email)
    enrolment = client.post("/v1/me/mfa/totp", headers=headers)
    assert enrolment.status_code == 200, enrolment.get_json()
    body = enrolment.get_json()
    code = pyotp.TOTP(body["secret"]).at(time.time())
    assert client.post("/v1/me/mfa/totp/confirm", headers=headers, json={"code": code}).status_code == 204
    return body


def _actions(db, user_id: str) -> list[tuple[str, str]]:
    with db.transaction() as session:
        return [(e.action, e.result) for e in session.scalars(
            select(AuditEvent).where(AuditEvent.object_id == user_id).order_by(AuditEvent.seq))]


def test_enrol_confirm_then_sign_in_needs_a_fresh_code_and_recovery_codes_work_once(client, db):
    tenant = make_tenant(db)
    start = _step_start()
    with time_machine.travel(start + 5, tick=False) as traveller:
        headers = sign_in(client, tenant.admin_email)
        first = client.post("/v1/me/mfa/totp", headers=headers).get_json()
        again = client.post("/v1/me/mfa/totp", headers=headers).get_json()  # pending: starting again replaces it
        assert first["secret"] != again["secret"]
        uri = again["otpauth_uri"]
        assert uri.startswith("otpauth://totp/") and f"secret={again['secret']}" in uri
        codes = again["recovery_codes"]
        assert len(codes) == 10 == len(set(codes))
        totp = pyotp.TOTP(again["secret"])
        wrong = client.post("/v1/me/mfa/totp/confirm", headers=headers,
                            json={"code": pyotp.TOTP(first["secret"]).at(time.time())})
        assert wrong.status_code == 400 and wrong.get_json()["code"] == "MFA_CODE_INVALID"
        assert client.post("/v1/me/mfa/totp/confirm", headers=headers,
                           json={"code": totp.at(time.time())}).status_code == 204
        conflict = client.post("/v1/me/mfa/totp", headers=headers)
        assert conflict.status_code == 409 and conflict.get_json()["code"] == "MFA_ALREADY_ENABLED"

        missing = _token(client, tenant.admin_email)
        assert missing.status_code == 401 and missing.get_json()["code"] == "MFA_REQUIRED"
        # A wrong password says nothing about the second factor (tests/auth/test_login_and_limits.py: the
        # answer an unknown account gets).
        bad_password = _token(client, tenant.admin_email, password="not the password")
        assert bad_password.status_code == 401 and bad_password.get_json()["code"] == "UNAUTHENTICATED"
        # The code that confirmed the enrolment was used for this step: replaying it is refused.
        replay = _token(client, tenant.admin_email, otp=totp.at(time.time()))
        assert replay.status_code == 401 and replay.get_json()["code"] == "UNAUTHENTICATED"

        traveller.move_to(start + STEP + 1)
        code = totp.at(time.time())
        assert _token(client, tenant.admin_email, otp=code).status_code == 200
        assert _token(client, tenant.admin_email, otp=code).status_code == 401  # same step again

        assert _token(client, tenant.admin_email, otp=codes[3].upper().replace("-", " ")).status_code == 200
        reused = _token(client, tenant.admin_email, otp=codes[3])
        assert reused.status_code == 401 and reused.get_json()["code"] == "UNAUTHENTICATED"

        # Turning it off needs a code; a wrong one is refused.
        refused = client.delete("/v1/me/mfa/totp", headers=headers, json={"otp": "000000"})
        assert refused.status_code == 400 and refused.get_json()["code"] == "MFA_CODE_INVALID"
        traveller.move_to(start + 2 * STEP + 1)
        assert client.delete("/v1/me/mfa/totp", headers=headers,
                             json={"otp": totp.at(time.time())}).status_code == 204
        assert client.delete("/v1/me/mfa/totp", headers=headers, json={"otp": "123456"}).get_json()["code"] \
            == "MFA_NOT_ENABLED"
        assert _token(client, tenant.admin_email).status_code == 200
    actions = _actions(db, tenant.admin_id)
    for expected in [("mfa.totp.enrol", "success"), ("mfa.totp.confirm", "failure"), ("mfa.totp.confirm", "success"),
                     ("auth.mfa", "denied"), ("auth.mfa", "failure"), ("mfa.recovery_code.use", "success"),
                     ("mfa.totp.disable", "success")]:
        assert expected in actions, expected


def test_codes_are_accepted_one_step_either_side_and_no_further(db):
    """The drift window at the step boundary itself, through the service function and a real database row."""
    email = make_user(db, ["auditor"])
    with db.transaction() as session:
        from gateway.auth.models import User

        user_id = session.scalars(select(User.id).where(User.email == email)).one()
    boundary = _step_start(10)
    with db.transaction() as session:
        enrolment = mfa.begin_enrolment(session, user_id=user_id, secret_key="k" * 40,
                                        audit={"actor": f"user:{user_id}"})
    totp = pyotp.TOTP(enrolment.secret)
    with db.transaction() as session:
        mfa.confirm_enrolment(session, user_id=user_id, code=totp.at(boundary - 5 * STEP), secret_key="k" * 40,
                              now=_at(boundary - 5 * STEP), audit={"actor": f"user:{user_id}"})

    def check(code_time: float, now: float) -> str | None:
        with db.transaction() as session:
            return mfa.check_code(session, user_id=user_id, code=totp.at(code_time), secret_key="k" * 40,
                                  now=_at(now))

    # At the first second of step s: s-2 is too old, s+2 too far ahead; s+1 is accepted (drift).
    assert check(boundary - 2 * STEP, boundary) is None
    assert check(boundary + 2 * STEP, boundary) is None
    assert check(boundary - STEP, boundary) == "totp"  # the previous step, one second after it ended
    assert check(boundary - STEP, boundary) is None  # replayed
    assert check(boundary + STEP, boundary - 0.001) is None  # s+1 seen from s-1 is two steps ahead
    assert check(boundary + STEP, boundary) == "totp"
    # Accepted step s+1 is now the last one: s itself, though inside the window, comes too late.
    assert check(boundary, boundary) is None


def test_two_sign_ins_racing_with_one_code_cannot_both_use_it(db):
    """The last-step compare-and-set is one UPDATE: with both transactions open at once, one code wins once."""
    import threading

    email = make_user(db, ["auditor"])
    with db.transaction() as session:
        from gateway.auth.models import User

        user_id = session.scalars(select(User.id).where(User.email == email)).one()
        secret = mfa.begin_enrolment(session, user_id=user_id, secret_key="k" * 40,
                                     audit={"actor": f"user:{user_id}"}).secret
    now = _step_start(10)
    totp = pyotp.TOTP(secret)
    with db.transaction() as session:
        assert mfa.confirm_enrolment(session, user_id=user_id, code=totp.at(now - STEP), secret_key="k" * 40,
                                     now=_at(now - STEP), audit={"actor": f"user:{user_id}"})
    barrier, results = threading.Barrier(2), []

    def attempt():
        with db.transaction() as session:
            mfa.is_enabled(session, user_id)  # both transactions have begun and read the row
            barrier.wait(timeout=10)
            results.append(mfa.check_code(session, user_id=user_id, code=totp.at(now), secret_key="k" * 40,
                                          now=_at(now)))

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results, key=str) == [None, "totp"]


def test_wrong_codes_count_toward_the_lockout(client, db, settings):
    tenant = make_tenant(db)
    with time_machine.travel(_step_start() + 3, tick=False):
        secret = _enable(client, tenant.requester_email)["secret"]
        wrong = str((int(pyotp.TOTP(secret).at(time.time())) + 1) % 1_000_000).zfill(6)
        for _ in range(settings.login_max_failures):
            assert _token(client, tenant.requester_email, otp=wrong).status_code == 401
    with time_machine.travel(_step_start() + STEP + 3, tick=False):
        locked = _token(client, tenant.requester_email, otp=pyotp.TOTP(secret).at(time.time()))
    assert locked.status_code == 429 and locked.get_json()["code"] == "LOGIN_LOCKED"


def test_an_api_key_has_no_second_factor(client, db):
    tenant = make_tenant(db)
    response = client.post("/v1/me/mfa/totp", headers=bearer(tenant.api_key))
    assert response.status_code == 403 and response.get_json()["code"] == "FORBIDDEN"


def test_the_setting_is_on_in_production_unless_turned_off(tmp_path):
    assert Settings.from_env({}, env="test", data_dir=tmp_path).requires_mfa is False
    assert Settings.from_env({"GATEWAY_MFA_REQUIRED": "true"}, env="test", data_dir=tmp_path).requires_mfa is True
    keys = {"GATEWAY_SECRET_KEY": "s" * 40, "GATEWAY_AUDIT_CHAIN_KEY": "a" * 40,
            "GATEWAY_PORTAL_URL": "https://records.example.org"}
    production = Settings.from_env(keys, env="production", data_dir=tmp_path)
    assert production.mfa_required is True and production.requires_mfa is True
    off = Settings.from_env({**keys, "GATEWAY_MFA_REQUIRED": "off"}, env="production", data_dir=tmp_path)
    assert off.requires_mfa is False


@pytest.fixture(scope="module")
def mfa_app(settings):
    """The gateway with the second factor required for staff, auditors and admins."""
    application = create_app(dataclasses.replace(settings, mfa_required=True))
    yield application
    application.extensions["gateway"].db.dispose()


def test_required_roles_may_only_enrol_until_they_have(mfa_app, db):
    client = mfa_app.test_client()
    tenant = make_tenant(db)
    staff = make_user(db, ["facility_staff"], ["tufts-mc"])
    with time_machine.travel(_step_start() + 7, tick=False):
        headers = sign_in(client, staff)  # signing in works: enrolling needs a token
        refused = client.get("/v1/facilities/tufts-mc/queue", headers=headers)
        assert refused.status_code == 403 and refused.get_json()["code"] == "MFA_ENROLMENT_REQUIRED"
        assert client.get("/v1/me", headers=headers).status_code == 200
        # A requester is not held to it; their admin is.
        assert client.get("/v1/requests", headers=bearer(tenant.api_key)).status_code == 200
        assert client.get("/v1/requests", headers=sign_in(client, tenant.requester_email)).status_code == 200
        admin = client.get(f"/v1/orgs/{tenant.org_id}/users", headers=sign_in(client, tenant.admin_email))
        assert admin.get_json()["code"] == "MFA_ENROLMENT_REQUIRED"
        secret = client.post("/v1/me/mfa/totp", headers=headers).get_json()["secret"]
        assert client.post("/v1/me/mfa/totp/confirm", headers=headers,
                           json={"code": pyotp.TOTP(secret).at(time.time())}).status_code == 204
        assert client.get("/v1/facilities/tufts-mc/queue", headers=headers).status_code == 200


def test_portal_sends_an_unenrolled_admin_to_set_up_then_asks_for_the_code(mfa_app, db):
    tenant = make_tenant(db)
    browser = portal_client(mfa_app)
    start = _step_start()
    with time_machine.travel(start + 4, tick=False) as traveller:
        form = browser.get("/portal/sign-in").get_data(as_text=True)
        signed = browser.post("/portal/sign-in", data={"email": tenant.admin_email, "password": PASSWORD,
                                                       "csrf_token": csrf_of(form)})
        home = browser.get(signed.headers["Location"])
        assert home.status_code == 303 and home.headers["Location"].endswith("/portal/account/two-step")
        assert browser.get("/portal/requests").headers["Location"].endswith("/portal/account/two-step")
        page = browser.get("/portal/account/two-step").get_data(as_text=True)
        assert 'id="mfa-required"' in page
        setup = browser.post("/portal/account/two-step/setup", data={"csrf_token": csrf_of(page)})
        html = setup.get_data(as_text=True)
        assert setup.status_code == 200 and '<svg role="img"' in html and "recovery-codes" in html
        secret = html.split('id="mfa-secret" class="secret" value="')[1].split('"')[0]
        totp = pyotp.TOTP(secret)
        confirmed = browser.post("/portal/account/two-step/confirm",
                                 data={"csrf_token": csrf_of(html), "code": totp.at(time.time())})
        assert confirmed.status_code == 303
        assert browser.get("/portal/requests").status_code == 200
        browser.post("/portal/sign-out", data={"csrf_token": csrf_of(html)})

        traveller.move_to(start + STEP + 4)
        form = browser.get("/portal/sign-in").get_data(as_text=True)
        first = browser.post("/portal/sign-in", data={"email": tenant.admin_email, "password": PASSWORD,
                                                      "csrf_token": csrf_of(form)})
        assert first.status_code == 303 and first.headers["Location"].startswith("/portal/sign-in/code")
        assert secret not in first.headers["Location"] and "rgw_session" not in first.headers.get("Set-Cookie", "")
        code_page = browser.get(first.headers["Location"]).get_data(as_text=True)
        wrong = browser.post("/portal/sign-in/code", data={"csrf_token": csrf_of(code_page), "code": "000000"})
        assert wrong.status_code == 401
        done = browser.post("/portal/sign-in/code", data={"csrf_token": csrf_of(wrong.get_data(as_text=True)),
                                                          "code": totp.at(time.time())})
        assert done.status_code == 303 and browser.get(done.headers["Location"]).status_code in (200, 303)
        assert browser.get("/portal/requests").status_code == 200

        # The code step lasts five minutes: after that, back to the password.
        browser.post("/portal/sign-out", data={"csrf_token": csrf_of(browser.get("/portal/requests")
                                                                     .get_data(as_text=True))})
        form = browser.get("/portal/sign-in").get_data(as_text=True)
        browser.post("/portal/sign-in", data={"email": tenant.admin_email, "password": PASSWORD,
                                              "csrf_token": csrf_of(form)})
        traveller.move_to(start + STEP + 4 + 301)
        late = browser.get("/portal/sign-in/code")
        assert late.status_code == 303 and "reason=code_expired" in late.headers["Location"]


def test_an_operator_resets_a_lost_second_factor_from_the_command_line(client, db, settings):
    import json

    from click.testing import CliRunner

    from gateway.cli import identity, main  # noqa: F401 (identity registers the users commands)
    from tests.fixtures.live import settings_environment

    tenant = make_tenant(db)
    with time_machine.travel(_step_start() + 9, tick=False):
        _enable(client, tenant.requester_email)
        assert _token(client, tenant.requester_email).get_json()["code"] == "MFA_REQUIRED"
    result = CliRunner().invoke(main, ["users", "mfa-reset", "--email", tenant.requester_email, "--json"],
                                env=settings_environment(settings))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"id": tenant.requester_id, "removed": True}
    assert _token(client, tenant.requester_email).status_code == 200
    assert ("mfa.totp.reset", "success") in _actions(db, tenant.requester_id)


def test_hospital_sign_on_accounts_are_not_sent_to_set_up_a_second_factor(mfa_app, db):
    """An account made by hospital sign-on has no password here: the hospital's provider owns its second factor.
    Given a password (say by a reset), the requirement applies to it like to anyone else."""
    from gateway.auth import cookies
    from gateway.auth.models import User
    from gateway.auth.passwords import NO_PASSWORD, hash_password
    from gateway.portal import sessions

    email = make_user(db, ["facility_staff"], ["tufts-mc"])
    with db.transaction() as session:
        user = session.scalars(select(User).where(User.email == email)).one()
        user.password_hash, user_id = NO_PASSWORD, user.id
        _row, token = sessions.start(session, user_id=user_id, org_id=None, lifetime=3600, audit_ctx={})
    browser = portal_client(mfa_app)
    with mfa_app.test_request_context(base_url="https://localhost"):
        name = cookies.session_cookie_name()
    browser.set_cookie(name, token, domain="localhost", secure=True)
    assert browser.get("/portal/queue").status_code == 200

    with db.transaction() as session:
        session.get(User, user_id).password_hash = hash_password(PASSWORD)
    sent = browser.get("/portal/queue")
    assert sent.status_code == 303 and sent.headers["Location"].endswith("/portal/account/two-step")

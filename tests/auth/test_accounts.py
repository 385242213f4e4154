"""Accounts (issue 15, API.md v1.1 "Accounts"): deactivation ends every credential at once, role and facility
changes (rights, validation, audit with before and after), password reset by e-mail through a real SMTP server
(no enumeration, single use, 30 minutes), password change, and a person's own portal sessions."""

from __future__ import annotations

import re
from datetime import timedelta

import time_machine
from sqlalchemy import select

from gateway.audit.models import AuditEvent
from gateway.auth import password_reset
from gateway.auth.login import _account_subject
from gateway.auth.models import AccountChange, LoginThrottle, PasswordReset, User
from gateway.db import utcnow
from gateway.mail.smtp import SmtpMailer
from tests.factories import PASSWORD, bearer, make_tenant, make_user, sign_in, unique
from tests.mail.conftest import inbox, mail_settings, smtp  # noqa: F401  (the real SMTP catcher)
from tests.portal.helpers import portal_client, portal_sign_in

NEW_PASSWORD = "a brand new passphrase for the portal"
LINK = re.compile(r"https://records\.example\.test/portal/reset-password#token=([A-Za-z0-9_-]{43})\n")


def user_id_of(db, email: str) -> str:
    with db.transaction() as session:
        return session.scalars(select(User.id).where(User.email == email)).one()


def audit_actions(db, user_id: str) -> list[tuple[str, str, str]]:
    with db.transaction() as session:
        return [(e.action, e.result, e.actor) for e in session.scalars(
            select(AuditEvent).where(AuditEvent.object_id == user_id).order_by(AuditEvent.seq))]


def changes(db, user_id: str) -> list[tuple[str, dict, dict]]:
    with db.transaction() as session:
        return [(c.action, c.before, c.after) for c in session.scalars(
            select(AccountChange).where(AccountChange.user_id == user_id).order_by(AccountChange.at))]


def portal_page(browser, path: str = "/portal/account"):
    """A portal page, or where the guard sends a browser whose session ended."""
    return browser.get(path)


def ended_because(response) -> str | None:
    assert response.status_code == 303, response.status_code
    match = re.search(r"reason=([a-z_]+)", response.headers["Location"])
    return match.group(1) if match else None


def refused_sign_in(client, email: str, password: str = PASSWORD) -> dict:
    response = client.post("/v1/auth/token", json={"email": email, "password": password})
    assert response.status_code == 401
    body = response.get_json()
    return {k: v for k, v in body.items() if k != "request_id"}


# --- deactivation ----------------------------------------------------------------------------------------------

def test_deactivation_ends_tokens_and_sessions_at_once_and_reactivation_restores_sign_in(app, client, db):
    firm = make_tenant(db)
    admin = sign_in(client, firm.admin_email)
    token = sign_in(client, firm.requester_email)
    browser = portal_client(app)
    portal_sign_in(browser, firm.requester_email)
    assert client.get("/v1/me", headers=token).status_code == 200

    response = client.post(f"/v1/users/{firm.requester_id}/deactivate", headers=admin)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["id"], body["active"], body["roles"]) == (firm.requester_id, False, ["requester"])
    assert body["deactivated_at"] is not None
    # The very next call: the live token and the portal session are refused.
    assert client.get("/v1/me", headers=token).status_code == 401
    assert ended_because(portal_page(browser)) == "deactivated"
    # Sign-in is refused exactly like a wrong password (no enumeration).
    assert refused_sign_in(client, firm.requester_email) == refused_sign_in(client, firm.requester_email, "wrong!")
    # Twice is a no-op, still 200.
    assert client.post(f"/v1/users/{firm.requester_id}/deactivate", headers=admin).status_code == 200

    response = client.post(f"/v1/users/{firm.requester_id}/reactivate", headers=admin)
    assert response.status_code == 200 and response.get_json()["active"] is True
    assert client.get("/v1/me", headers=token).status_code == 401  # old credentials stay ended
    assert client.get("/v1/me", headers=sign_in(client, firm.requester_email)).status_code == 200

    admin_actor = f"user:{firm.admin_id}"
    assert [a for a in audit_actions(db, firm.requester_id) if a[0].startswith("user.")] == [
        ("user.deactivate", "success", admin_actor), ("user.reactivate", "success", admin_actor)]
    assert changes(db, firm.requester_id) == [
        ("user.deactivate", {"roles": ["requester"], "facilities": [], "active": True},
         {"roles": ["requester"], "facilities": [], "active": False}),
        ("user.reactivate", {"roles": ["requester"], "facilities": [], "active": False},
         {"roles": ["requester"], "facilities": [], "active": True})]


def test_an_operator_deactivates_any_account_from_the_console_at_once(app, client, db, settings):
    """`gateway users deactivate --email`: the break-glass path when nobody who may manage the account through
    the API can act (a compromised password, a person who left), even an organization's last admin."""
    import json

    from click.testing import CliRunner

    from gateway.cli import identity, main  # noqa: F401 (identity registers the users commands)
    from tests.fixtures.live import settings_environment

    firm = make_tenant(db)
    token = sign_in(client, firm.admin_email)
    browser = portal_client(app)
    portal_sign_in(browser, firm.admin_email)

    def console(*args):
        result = CliRunner().invoke(main, ["users", *args, "--json"], env=settings_environment(settings))
        return result.exit_code, json.loads(result.stdout if result.exit_code == 0 else result.stderr)

    assert console("deactivate", "--email", firm.admin_email.upper()) == (0, {
        "id": firm.admin_id, "active": False, "changed": True, "org_without_admin": True})
    assert client.get("/v1/me", headers=token).status_code == 401  # the very next call
    assert ended_because(portal_page(browser)) == "deactivated"
    assert refused_sign_in(client, firm.admin_email) == refused_sign_in(client, firm.admin_email, "wrong!")
    assert console("deactivate", "--email", firm.admin_email) == (0, {
        "id": firm.admin_id, "active": False, "changed": False, "org_without_admin": False})
    code, body = console("deactivate", "--email", "nobody@example.test")
    assert code == 2 and body["error"]["code"] == "NOT_FOUND"

    assert console("reactivate", "--email", firm.admin_email)[1]["changed"] is True
    assert client.get("/v1/me", headers=token).status_code == 401  # old credentials stay ended
    assert client.get("/v1/me", headers=sign_in(client, firm.admin_email)).status_code == 200

    actor = [a[2] for a in audit_actions(db, firm.admin_id) if a[0] == "user.deactivate"]
    assert len(actor) == 1 and actor[0].startswith("cli:")
    assert [c[0] for c in changes(db, firm.admin_id)] == ["user.deactivate", "user.reactivate"]


def test_who_may_deactivate_whom(client, db):
    firm, other = make_tenant(db), make_tenant(db, "insurer")
    admin, operator = sign_in(client, firm.admin_email), sign_in(client, make_user(db, ["gateway_admin"]))
    staff_email = make_user(db, ["facility_staff"], ["tufts-mc"])
    staff_id = user_id_of(db, staff_email)

    def deactivate(headers, user_id):
        return client.post(f"/v1/users/{user_id}/deactivate", headers=headers)

    mine = deactivate(admin, firm.admin_id)
    assert (mine.status_code, mine.get_json()["code"]) == (409, "CANNOT_CHANGE_OWN_ACCOUNT")
    # An operator: never a firm's requester; its only admin stays (the firm would be locked out).
    assert deactivate(operator, firm.requester_id).get_json()["code"] == "FORBIDDEN"
    last = deactivate(operator, firm.admin_id)
    assert (last.status_code, last.get_json()["code"]) == (409, "LAST_ADMIN")
    assert deactivate(operator, staff_id).status_code == 200
    assert client.post("/v1/auth/token", json={"email": staff_email, "password": PASSWORD}).status_code == 401
    # Another organization's admin, and the firm's admin on staff: the tenancy guard's 404.
    assert deactivate(sign_in(client, other.admin_email), firm.requester_id).status_code == 404
    assert deactivate(admin, staff_id).status_code == 404
    assert deactivate(sign_in(client, firm.requester_email), firm.admin_id).status_code == 403
    assert deactivate(bearer(firm.api_key), firm.requester_id).status_code == 403
    with db.transaction() as session:
        assert session.get(User, firm.admin_id).active and session.get(User, firm.requester_id).active


# --- roles and facilities --------------------------------------------------------------------------------------

def test_role_and_facility_changes_are_validated_applied_at_once_and_audited(client, db):
    firm = make_tenant(db)
    admin, operator = sign_in(client, firm.admin_email), sign_in(client, make_user(db, ["gateway_admin"]))

    def patch(headers, user_id, body):
        return client.patch(f"/v1/users/{user_id}", headers=headers, json=body)

    promoted = patch(admin, firm.requester_id, {"roles": ["requester_admin"]})
    assert promoted.status_code == 200 and promoted.get_json()["roles"] == ["requester_admin"]
    # The promoted user is an admin on their next call: the roles are read from the database each time.
    assert client.get(f"/v1/orgs/{firm.org_id}/users", headers=sign_in(client, firm.requester_email)).status_code == 200
    for body, code in [({"roles": ["facility_staff"]}, "ROLES_INVALID"),
                       ({"roles": ["gateway_admin"]}, "ROLES_INVALID"),
                       ({"facilities": ["tufts-mc"]}, "FACILITIES_NOT_APPLICABLE")]:
        refused = patch(admin, firm.requester_id, body)
        assert (refused.status_code, refused.get_json()["code"]) == (422, code), body
    assert patch(admin, firm.requester_id, {"roles": ["admin"]}).status_code == 422  # not a role at all
    own = patch(admin, firm.admin_id, {"roles": ["requester"]})
    assert (own.status_code, own.get_json()["code"]) == (409, "CANNOT_CHANGE_OWN_ACCOUNT")

    staff_email = make_user(db, ["facility_staff"], ["tufts-mc"])
    staff_id, staff = user_id_of(db, staff_email), sign_in(client, staff_email)
    assert client.get("/v1/facilities/tufts-mc/queue", headers=staff).status_code == 200
    assert patch(admin, staff_id, {"facilities": ["lowell-general"]}).status_code == 404  # not the firm's
    for body, code in [({"facilities": ["nowhere-general"]}, "FACILITY_UNKNOWN"),
                       ({"facilities": []}, "FACILITY_REQUIRED"),
                       ({"roles": ["requester"]}, "ROLES_INVALID")]:
        refused = patch(operator, staff_id, body)
        assert (refused.status_code, refused.get_json()["code"]) == (422, code), body
    moved = patch(operator, staff_id, {"facilities": ["lowell-general"]})
    assert moved.status_code == 200 and moved.get_json()["facilities"] == ["lowell-general"]
    assert client.get("/v1/facilities/tufts-mc/queue", headers=staff).status_code in (403, 404)
    assert client.get("/v1/facilities/lowell-general/queue", headers=staff).status_code == 200
    audited = patch(operator, staff_id, {"roles": ["auditor"]})
    assert audited.status_code == 200 and audited.get_json()["facilities"] == []  # facilities go with the role
    assert client.get("/v1/facilities/lowell-general/queue", headers=staff).status_code == 403
    # An operator keeps a firm's admin an admin, and never touches its requesters.
    assert patch(operator, firm.admin_id, {"roles": ["requester"]}).status_code == 403

    operator_actor = [a for a in audit_actions(db, staff_id) if a[0] == "user.roles_change"]
    assert len(operator_actor) == 2 and all(a[1] == "success" for a in operator_actor)
    assert [(before, after) for _action, before, after in changes(db, staff_id)] == [
        ({"roles": ["facility_staff"], "facilities": ["tufts-mc"], "active": True},
         {"roles": ["facility_staff"], "facilities": ["lowell-general"], "active": True}),
        ({"roles": ["facility_staff"], "facilities": ["lowell-general"], "active": True},
         {"roles": ["auditor"], "facilities": [], "active": True})]


# --- password reset --------------------------------------------------------------------------------------------

def resets_of(db, user_id: str) -> list[PasswordReset]:
    with db.transaction() as session:
        return list(session.scalars(select(PasswordReset).where(PasswordReset.user_id == user_id)
                                    .order_by(PasswordReset.created_at)))


def mail_token(db, mail_settings, inbox, user_id: str, email: str) -> str:  # noqa: F811
    """Send the user's pending reset e-mails through the real SMTP server; the token from the last one."""
    mailer = SmtpMailer.from_settings(mail_settings)
    for reset in resets_of(db, user_id):
        if reset.mail_state == "pending":
            assert password_reset.send(db, reset.id, mailer=mailer, settings=mail_settings,
                                       now=utcnow()) == "sent"
    return LINK.search(text_of(inbox.to(email)[-1])).group(1)


def text_of(caught) -> str:
    return caught.message.get_content().replace("\r\n", "\n")  # SMTP carries CRLF


def test_reset_answers_alike_for_any_address_and_mails_a_single_use_link(
        app, client, db, mail_settings, inbox):  # noqa: F811
    firm = make_tenant(db)
    token = sign_in(client, firm.requester_email)
    browser = portal_client(app)
    portal_sign_in(browser, firm.requester_email)
    unknown = client.post("/v1/auth/password-reset", json={"email": f"{unique('nobody')}@example.test"})
    known = client.post("/v1/auth/password-reset", json={"email": firm.requester_email.upper()})
    assert unknown.status_code == known.status_code == 202
    assert unknown.get_json() == known.get_json() and set(known.get_json()) == {"detail"}
    assert [r.mail_state for r in resets_of(db, firm.requester_id)] == ["pending"]

    secret = mail_token(db, mail_settings, inbox, firm.requester_id, firm.requester_email)
    [caught] = inbox.to(firm.requester_email)
    # The whole text: a link and what it is for; no name, no request, nothing else about anyone.
    assert caught.message["Subject"] == "Reset your Records Request Gateway password"
    assert text_of(caught) == (
        "Hello,\n\nSomeone (we hope you) asked to reset the password of your Records Request Gateway account.\n\n"
        "Choose a new password here within 30 minutes:\n"
        f"https://records.example.test/portal/reset-password#token={secret}\n\n"
        "The link works once. If you did not ask for it, ignore this e-mail: your password stays as it is.\n")
    with db.transaction() as session:  # only the token's hash is kept
        row = session.scalars(select(PasswordReset).where(PasswordReset.user_id == firm.requester_id)).one()
        assert secret not in (row.token_hash, row.id) and len(row.token_hash) == 64

    weak = client.post("/v1/auth/password-reset/confirm", json={"token": secret, "password": "short"})
    assert weak.status_code == 422  # and the token is not spent
    done = client.post("/v1/auth/password-reset/confirm", json={"token": secret, "password": NEW_PASSWORD})
    assert done.status_code == 204, done.get_json()
    # Every session and token of the user ended; the new password works, the old one does not.
    assert client.get("/v1/me", headers=token).status_code == 401
    assert ended_because(portal_page(browser)) == "password_changed"
    refused_sign_in(client, firm.requester_email)
    assert client.get("/v1/me", headers=sign_in(client, firm.requester_email, NEW_PASSWORD)).status_code == 200
    again = client.post("/v1/auth/password-reset/confirm", json={"token": secret, "password": PASSWORD + "!"})
    assert (again.status_code, again.get_json()["code"]) == (400, "RESET_TOKEN_INVALID")
    forged = client.post("/v1/auth/password-reset/confirm", json={"token": "x" * 43, "password": NEW_PASSWORD})
    assert forged.get_json()["code"] == "RESET_TOKEN_INVALID"
    actions = [a[:2] for a in audit_actions(db, firm.requester_id) if a[0].startswith("user.password")]
    assert actions == [("user.password_reset_request", "success"), ("user.password_reset", "success")]


def test_a_reset_link_expires_after_30_minutes_and_each_account_gets_few(
        client, db, mail_settings, inbox):  # noqa: F811
    firm = make_tenant(db)
    for _ in range(4):
        assert client.post("/v1/auth/password-reset", json={"email": firm.admin_email}).status_code == 202
    assert len(resets_of(db, firm.admin_id)) == password_reset.PER_ACCOUNT_LIMIT == 3
    secret = mail_token(db, mail_settings, inbox, firm.admin_id, firm.admin_email)
    with time_machine.travel(utcnow() + timedelta(minutes=31), tick=False):
        late = client.post("/v1/auth/password-reset/confirm", json={"token": secret, "password": NEW_PASSWORD})
    assert (late.status_code, late.get_json()["code"]) == (400, "RESET_TOKEN_INVALID")
    assert client.get("/v1/me", headers=sign_in(client, firm.admin_email)).status_code == 200


# --- password change and sessions ------------------------------------------------------------------------------

def test_password_change_counts_wrong_passwords_and_ends_other_credentials(app, client, db):
    firm = make_tenant(db)
    first, second = sign_in(client, firm.requester_email), sign_in(client, firm.requester_email)
    here, elsewhere = portal_client(app), portal_client(app)
    csrf = portal_sign_in(here, firm.requester_email)
    portal_sign_in(elsewhere, firm.requester_email)

    wrong = client.post("/v1/me/password", headers=first, json={"current": "not my password", "new": NEW_PASSWORD})
    assert (wrong.status_code, wrong.get_json()["code"]) == (400, "PASSWORD_INCORRECT")
    with db.transaction() as session:
        throttle = session.scalars(select(LoginThrottle).where(
            LoginThrottle.subject == _account_subject(firm.requester_email))).one()
        assert throttle.failures == 1  # toward the same lockout as sign-in
    assert client.get("/v1/me", headers=first).status_code == 200  # a wrong guess ends nothing

    # In the portal: this browser stays signed in, every other session and token ends.
    changed = here.post("/portal/account/password", data={"csrf_token": csrf, "current": PASSWORD,
                                                           "new": NEW_PASSWORD, "again": NEW_PASSWORD})
    assert changed.status_code == 303 and "done=password" in changed.headers["Location"]
    assert here.get("/portal/account/security").status_code == 200
    assert ended_because(portal_page(elsewhere)) == "password_changed"
    assert client.get("/v1/me", headers=first).status_code == 401
    assert client.get("/v1/me", headers=second).status_code == 401

    # Over the API the token making the change ends too.
    third = sign_in(client, firm.requester_email, NEW_PASSWORD)
    assert client.post("/v1/me/password", headers=third,
                       json={"current": NEW_PASSWORD, "new": PASSWORD}).status_code == 204
    assert client.get("/v1/me", headers=third).status_code == 401
    assert ended_because(portal_page(here)) == "password_changed"
    assert client.post("/v1/me/password", headers=bearer(firm.api_key),
                       json={"current": PASSWORD, "new": NEW_PASSWORD}).status_code == 403
    actions = [a[:2] for a in audit_actions(db, firm.requester_id) if a[0] == "user.password_change"]
    assert actions == [("user.password_change", "failure"), ("user.password_change", "success"),
                       ("user.password_change", "success")]


def test_a_person_lists_and_ends_their_own_portal_sessions(app, client, db):
    firm = make_tenant(db)
    token = sign_in(client, firm.requester_email)
    laptop, phone = portal_client(app), portal_client(app)
    phone.environ_base["HTTP_USER_AGENT"] = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) "
                                             "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/604.1")
    portal_sign_in(laptop, firm.requester_email)
    portal_sign_in(phone, firm.requester_email)
    listed = client.get("/v1/me/sessions", headers=token)
    assert listed.status_code == 200
    items = listed.get_json()["items"]
    assert len(items) == 2 and {i["current"] for i in items} == {False}
    phone_session = next(i for i in items if i["client"] == "Safari on iOS")

    other = sign_in(client, firm.admin_email)
    assert client.delete(f"/v1/me/sessions/{phone_session['id']}", headers=other).status_code == 404
    assert client.delete(f"/v1/me/sessions/{phone_session['id']}", headers=token).status_code == 204
    assert ended_because(portal_page(phone)) == "ended_by_user"
    assert [i["id"] for i in client.get("/v1/me/sessions", headers=token).get_json()["items"]] != [
        phone_session["id"]]
    assert len(client.get("/v1/me/sessions", headers=token).get_json()["items"]) == 1
    assert laptop.get("/portal/account/security").status_code == 200
    assert client.get("/v1/me/sessions", headers=bearer(firm.api_key)).status_code == 403

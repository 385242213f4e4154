"""Accounts in a real browser (issue 15 acceptance): Debian's Chromium against gunicorn.  A firm's admin adds a
user, makes them an administrator and back, deactivates a colleague (whose open session ends at once) and
reactivates them; a person changes their password and ends another session; someone who forgot their password
gets the e-mail through a real SMTP server and sets a new one from its link.  Every page passes axe-core."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from gateway.auth import password_reset
from gateway.auth.models import PasswordReset
from gateway.db import utcnow
from gateway.mail.smtp import SmtpMailer
from tests.factories import PASSWORD, make_tenant, unique
from tests.mail.conftest import inbox, mail_settings, smtp  # noqa: F401  (the real SMTP catcher)
from tests.portal.conftest import screenshot
from tests.portal.test_accessibility import audit, axe_source  # noqa: F401  (the axe fixture)
from tests.portal.test_browser import sign_in

NEW_PASSWORD = "violet lanterns over the harbour"


@pytest.fixture(scope="module")
def site(live_gateway):
    """The session's gateway under gunicorn (no relay: nothing here is routed)."""
    return live_gateway.url.replace("127.0.0.1", "localhost")


def row_of(page, email: str):
    return page.locator(f'#user-list tr[data-user-email="{email}"]')


def test_an_admin_manages_the_firms_users(site, new_page, db, axe_source):  # noqa: F811
    firm = make_tenant(db)
    admin = new_page(site)
    admin.on("dialog", lambda dialog: dialog.accept())
    colleague = new_page(site)
    sign_in(colleague, firm.requester_email)
    sign_in(admin, firm.admin_email)
    admin.get_by_role("link", name="Users").click()
    expect(admin.get_by_role("heading", name="Users", exact=True)).to_be_visible()
    expect(row_of(admin, firm.admin_email)).to_contain_text("(you)")
    audit(admin, axe_source, "users")

    # Add a user: a refused form first (the page keeps the address, never the password), then a good one.
    email = f"{unique('clerk')}@example.test"
    admin.get_by_label("E-mail address").fill(email)
    admin.get_by_label("First password").fill("short")
    admin.get_by_role("button", name="Add user").click()
    expect(admin.locator(".error-summary")).to_contain_text("Password: use 12 to 256 characters.")
    audit(admin, axe_source, "users with an error")
    admin.get_by_label("First password").fill(PASSWORD)
    admin.get_by_role("button", name="Add user").click()
    expect(admin.locator("#users-notice")).to_contain_text("The user was added")
    expect(row_of(admin, email)).to_contain_text("Active")

    # Make them an administrator, and back.
    admin.get_by_label(f"Role of {email}").select_option("requester_admin")
    admin.get_by_role("button", name=f"Change role of {email}").click()
    expect(admin.locator("#users-notice")).to_contain_text("role was changed")
    expect(admin.get_by_label(f"Role of {email}")).to_have_value("requester_admin")
    admin.get_by_label(f"Role of {email}").select_option("requester")
    admin.get_by_role("button", name=f"Change role of {email}").click()
    expect(admin.get_by_label(f"Role of {email}")).to_have_value("requester")

    # Deactivate the colleague: their open page is signed out on its next request.
    admin.get_by_role("button", name=f"Deactivate {firm.requester_email}").click()
    expect(admin.locator("#users-notice")).to_contain_text("signed out everywhere")
    expect(row_of(admin, firm.requester_email).locator("[data-user-state]")).to_have_text("Deactivated")
    screenshot(admin, "20-users")
    colleague.reload()
    expect(colleague.locator("#signed-out-message")).to_contain_text("no longer active")
    admin.get_by_role("button", name=f"Reactivate {firm.requester_email}").click()
    expect(row_of(admin, firm.requester_email).locator("[data-user-state]")).to_have_text("Active")
    sign_in(colleague, firm.requester_email)


def test_password_change_sessions_and_a_forgotten_password(site, new_page, db, axe_source, mail_settings,  # noqa: F811
                                                           inbox):  # noqa: F811
    firm = make_tenant(db)
    other_browser = new_page(site)
    sign_in(other_browser, firm.requester_email)
    page = new_page(site)
    sign_in(page, firm.requester_email)
    page.get_by_role("link", name="Account").click()
    page.get_by_role("link", name=re.compile("Change your password")).click()
    expect(page.locator("#session-list tbody tr")).to_have_count(2)
    expect(page.locator("#session-list tr[data-current]")).to_contain_text("(this browser)")
    audit(page, axe_source, "password and sessions")

    page.get_by_label("Current password").fill("not my password")
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page.locator(".error-summary")).to_contain_text("that is not your password")
    audit(page, axe_source, "password change with an error")
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page.locator("#security-notice")).to_contain_text("Your password was changed")
    # This browser stays; the other was signed out with the old password.
    expect(page.locator("#session-list tbody tr")).to_have_count(1)
    other_browser.reload()
    expect(other_browser.locator("#signed-out-message")).to_contain_text("password was changed")
    page.get_by_role("button", name="Sign out here").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

    # Forgotten: the sign-in page's link, the e-mail through SMTP, its link, a new password.
    page.get_by_role("link", name="Forgot your password?").click()
    expect(page.get_by_role("heading", name="Forgot your password?")).to_be_visible()
    audit(page, axe_source, "forgot password")
    page.get_by_label("Email address").fill(firm.requester_email)
    page.get_by_role("button", name="E-mail me a link").click()
    expect(page.locator("#reset-sent")).to_be_visible()
    with db.transaction() as session:
        reset_id = session.query(PasswordReset.id).filter(PasswordReset.user_id == firm.requester_id).scalar()
    assert password_reset.send(db, reset_id, mailer=SmtpMailer.from_settings(mail_settings),
                               settings=mail_settings, now=utcnow()) == "sent"
    text = inbox.to(firm.requester_email)[-1].message.get_content()
    link = re.search(r"https://records\.example\.test(/portal/reset-password#token=[A-Za-z0-9_-]+)", text).group(1)
    page.goto(link)
    expect(page.locator("#reset-link-found")).to_be_visible()
    expect(page.locator("#reset-code-field")).to_be_hidden()
    assert "#" not in page.url  # the token left the address bar (and never reached the server)
    audit(page, axe_source, "reset password")
    screenshot(page, "21-reset-password")
    page.get_by_label("New password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat the new password").fill(PASSWORD)
    page.get_by_role("button", name="Set new password").click()
    expect(page.locator("#signed-out-message")).to_contain_text("new password is set")
    sign_in(page, firm.requester_email)
    # The link worked once.
    page.goto(link)
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set new password").click()
    expect(page.locator(".error-summary")).to_contain_text("invalid, already used or expired")

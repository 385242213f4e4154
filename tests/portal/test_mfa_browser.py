"""Two-step sign-in in a real browser (Debian's Chromium, Playwright, gunicorn): a records clerk whose role needs
it is sent to set it up, reads the key off the page, confirms with a code, signs out, and signs in again with a
code and then with a recovery code; axe-core finds nothing on any of the new pages.

Codes come from pyotp for the moment they are typed; the gateway accepts one 30-second step either side, and the
sign-in code is taken one step ahead of the confirming one, so the run never depends on where in a step it is.
"""

from __future__ import annotations

import re
import time

import pyotp
from playwright.sync_api import expect

from tests.factories import PASSWORD, make_user
from tests.portal.conftest import screenshot
from tests.portal.test_accessibility import audit, axe_source  # noqa: F401 (a fixture)

SETUP = re.compile(r"/portal/account/two-step$")


def _password_step(page, email: str) -> None:
    page.goto("/portal/sign-in")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_a_clerk_sets_up_two_step_sign_in_and_signs_in_with_a_code_then_a_recovery_code(start_gateway, new_page, db,
                                                                                       axe_source):  # noqa: F811
    gateway = start_gateway(mfa_required=True)
    clerk = make_user(db, ["facility_staff"], ["lowell-general"])
    page = new_page(gateway.url.replace("127.0.0.1", "localhost"))

    _password_step(page, clerk)
    expect(page).to_have_url(SETUP)  # straight to set-up
    expect(page.locator("#mfa-required")).to_be_visible()
    audit(page, axe_source, "two-step sign-in, required and not set up")
    page.get_by_role("link", name="Queue").click()  # nothing else is open yet
    expect(page).to_have_url(SETUP)

    page.get_by_role("button", name="Set up two-step sign-in").click()
    expect(page.get_by_role("img", name="QR code for your authenticator app")).to_be_visible()
    secret = page.get_by_label("Key for entering by hand").input_value()
    recovery_codes = page.locator("#recovery-codes code").all_inner_texts()
    assert len(recovery_codes) == 10 and "two-step" in page.url
    audit(page, axe_source, "two-step set-up with the QR code and recovery codes")
    screenshot(page, "two-step-setup")
    page.get_by_label("6-digit code").fill("000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
    page.get_by_role("button", name="Turn on two-step sign-in").click()
    expect(page.locator(".error-summary")).to_contain_text("does not match")
    audit(page, axe_source, "two-step set-up with a wrong code")
    page.get_by_label("6-digit code").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Turn on two-step sign-in").click()
    expect(page.locator("#mfa-changed")).to_contain_text("Two-step sign-in is on")
    audit(page, axe_source, "two-step sign-in on")
    page.get_by_role("link", name="Queue").click()
    expect(page.get_by_role("heading", level=1)).not_to_have_text("Two-step sign-in")
    page.get_by_role("button", name="Sign out").click()

    _password_step(page, clerk)
    expect(page.get_by_label("Code from your authenticator app")).to_be_visible()
    assert secret not in page.url and "code" in page.url
    audit(page, axe_source, "sign-in, code step")
    page.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(secret).at(time.time() + 30))
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()

    _password_step(page, clerk)
    page.get_by_role("link", name="Lost your phone? Use a recovery code").click()
    expect(page.get_by_label("Recovery code")).to_be_visible()
    audit(page, axe_source, "sign-in, recovery code step")
    page.get_by_label("Recovery code").fill(recovery_codes[0])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()

    _password_step(page, clerk)  # a recovery code works once
    page.get_by_role("link", name="Lost your phone? Use a recovery code").click()
    page.get_by_label("Recovery code").fill(recovery_codes[0])
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".error-summary")).to_contain_text("does not match, or was used before")
    audit(page, axe_source, "sign-in, recovery code refused")

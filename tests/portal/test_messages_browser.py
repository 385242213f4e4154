"""A message exchange in a real browser (issue 14 acceptance): Debian's Chromium against gunicorn, with the relay
running. The requester writes, records staff answer and leave an internal note (by keyboard), and the requester
sees the answer but never the note; each page passes the axe-core audit."""

from __future__ import annotations

import time

from playwright.sync_api import expect

from tests.factories import make_tenant, make_user
from tests.portal.conftest import screenshot
from tests.portal.test_accessibility import audit, axe_source  # noqa: F401  (the axe fixture)
from tests.portal.test_browser import sign_in
from tests.routing.helpers import submitted

NOTE = "Chart is on microfilm; ask Dana in archives before Friday."


def open_when_routed(page, path: str, timeout: float = 30) -> None:
    """Staff see a request once the relay has put it on a queue: reload until the page is there."""
    deadline = time.monotonic() + timeout
    page.goto(path)
    while page.locator("#messages").count() == 0:
        assert time.monotonic() < deadline, "the request never reached the staff page"
        time.sleep(0.5)
        page.goto(path)


def test_requester_writes_staff_answer_and_keep_an_internal_note(portal_site, new_page, db, client, axe_source):  # noqa: F811
    firm = make_tenant(db)
    request_id = submitted(client, firm, "tufts-mc")
    path = f"/portal/requests/{request_id}"

    requester = new_page(portal_site)
    sign_in(requester, firm.requester_email)
    requester.goto(path)
    expect(requester.locator("#no-messages")).to_be_visible()
    expect(requester.get_by_label("Internal note")).to_have_count(0)
    requester.get_by_label("Your message").fill("Please include the 2025 MRI report.\nThank you.")
    requester.get_by_role("button", name="Send").click()
    thread = requester.locator(".message-thread li")
    expect(thread).to_have_count(1)
    expect(thread.first).to_contain_text("Please include the 2025 MRI report.")
    audit(requester, axe_source, "request page with its thread (requester)")

    staff = new_page(portal_site)
    sign_in(staff, make_user(db, ["facility_staff"], ["tufts-mc"]))
    open_when_routed(staff, path)
    expect(staff.locator(".message-thread li").first).to_contain_text("Please include the 2025 MRI report.")
    staff.get_by_label("Message or note").fill("Yes, it will be part of the release.")
    staff.get_by_role("button", name="Send").click()
    expect(staff.locator(".message-thread li")).to_have_count(2)

    # The internal note, written and sent with the keyboard alone.
    staff.get_by_label("Message or note").focus()
    staff.keyboard.type(NOTE)
    staff.keyboard.press("Tab")
    expect(staff.get_by_label("Internal note")).to_be_focused()
    staff.keyboard.press("Space")
    expect(staff.get_by_label("Internal note")).to_be_checked()
    staff.keyboard.press("Tab")
    expect(staff.get_by_role("button", name="Send")).to_be_focused()
    staff.keyboard.press("Enter")
    note = staff.locator('.message-thread li[data-internal="true"]')
    expect(note).to_have_count(1)
    expect(note).to_contain_text(NOTE)
    expect(note).to_contain_text("Internal note")
    audit(staff, axe_source, "request page with its thread and an internal note (staff)")
    screenshot(staff, "12-staff-message-thread")

    requester.reload()
    expect(requester.locator(".message-thread li")).to_have_count(2)
    expect(requester.locator(".message-thread li").last).to_contain_text("Yes, it will be part of the release.")
    expect(requester.locator(".message-thread li").last).to_contain_text("Records team, Tufts Medical Center")
    assert NOTE not in requester.content()
    expect(requester.locator('[data-internal="true"]')).to_have_count(0)
    screenshot(requester, "13-requester-message-thread")

    # An empty message is refused beside the form, and the page still passes the audit.
    requester.get_by_label("Your message").fill("   ")
    requester.locator("#message-form").evaluate("form => form.noValidate = true")
    requester.get_by_role("button", name="Send").click()
    expect(requester.locator("#message-form").locator("..")).to_contain_text("Write a message first.")
    audit(requester, axe_source, "refused message")

    requester.get_by_role("link", name="Account").click()
    box = requester.get_by_label("E-mail me about my organization's requests")
    expect(box).to_be_checked()
    audit(requester, axe_source, "account page")
    box.uncheck()
    requester.get_by_role("button", name="Save").click()
    expect(requester.locator("#saved-notice")).to_contain_text("no longer receive")
    expect(requester.get_by_label("E-mail me about my organization's requests")).not_to_be_checked()

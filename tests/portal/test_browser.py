"""Issue 7's acceptance in a real browser: Debian's Chromium driven by Playwright against the gateway
served by gunicorn, with clamd, moto's S3 server, Redis and the outbox relay all real."""

from __future__ import annotations

import re
import time
from datetime import date, timedelta

import pytest
from playwright.sync_api import expect

from tests import samples
from tests.factories import FACILITY_NAMES, PASSWORD, facility_today, make_tenant, make_user
from tests.portal.conftest import screenshot

FACILITY_BUTTONS = {"lowell-general": "Lowell General Hospital", "melrosewakefield": "MelroseWakefield Hospital",
                    "tufts-mc": "Tufts Medical Center", "community-practices": "Another location"}
# Records a progress bar's every value, so the test sees the bar move and reach 100 %.
WATCH_PROGRESS = """() => {
  window.progressSeen = [];
  new MutationObserver(records => records.forEach(r => {
    if (r.target.tagName === 'PROGRESS') window.progressSeen.push(Number(r.target.getAttribute('value')));
  })).observe(document.body, {subtree: true, attributes: true, attributeFilter: ['value']});
}"""
DROP_FILE = """([name, base64]) => {
  const bytes = Uint8Array.from(atob(base64), c => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, {type: 'application/pdf'}));
  const zone = document.querySelector('.dropzone');
  zone.dispatchEvent(new DragEvent('dragenter', {dataTransfer: transfer, bubbles: true}));
  zone.dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true}));
}"""


@pytest.fixture(scope="module")
def firm(db):
    return make_tenant(db)


def sign_in(page, email: str) -> None:
    page.goto("/portal/sign-in")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def fill_request(page, facility: str, *, signed_on: date, expires_on: date, also=(),
                 discloser: str | None = None) -> None:
    """The new-request steps as a paralegal goes through them, by label and button (`also`: other facilities
    ticked to receive the same request; `discloser`: who the authorization says may release, by default the
    facility's name)."""
    page.goto("/portal/requests/new")
    page.locator("#f-facility").get_by_text(FACILITY_BUTTONS[facility]).click()  # the radio, not "also send to"
    for other in also:
        page.get_by_label(f"Also send to {FACILITY_BUTTONS[other]}").check()
    if facility == "community-practices":
        page.get_by_label("Practice name").fill("Riverside Family Practice")
        page.get_by_label("Practice address").fill("10 River Rd, Lowell")
    page.get_by_label("Your reference").fill(f"CLAIM-{facility}-{time.time_ns()}")
    page.get_by_label("Purpose", exact=True).select_option("litigation")
    page.locator("#step-facility").get_by_role("button", name="Next").click()
    page.get_by_label("First name").fill("Ana")
    page.get_by_label("Last name").fill("Silva")
    page.get_by_label("Date of birth").fill("1980-02-29")
    page.locator("#step-patient").get_by_role("button", name="Next").click()
    page.get_by_label("Visit notes").check()
    page.get_by_label("Lab results").check()
    page.get_by_label(re.compile(r"^From")).fill("2025-01-01")
    page.get_by_label(re.compile(r"^To\b")).fill(str(facility_today() - timedelta(days=30)))
    page.locator("#step-records").get_by_role("button", name="Next").click()
    page.get_by_label("Recipient’s name").fill("Smith & Jones LLP")
    page.get_by_label("Recipient’s address").fill("1 Main St, Boston")
    page.locator("#step-delivery").get_by_role("button", name="Next").click()
    fill_authorization(page, facility, signed_on=signed_on, expires_on=expires_on, discloser=discloser)


def fill_authorization(page, facility: str, *, signed_on: date, expires_on: date,
                       discloser: str | None = None) -> None:
    page.get_by_label("Signed by").select_option("patient")
    page.get_by_label("Signer’s name").fill("Ana Silva")
    page.get_by_label("Date signed").fill(str(signed_on))
    page.get_by_label("Expiration date").fill(str(expires_on))
    page.get_by_label("Who may release the records").fill(discloser or FACILITY_NAMES[facility])
    page.get_by_label("Who may receive them").fill("Smith & Jones LLP")
    page.get_by_label("Information to be released").fill("All visit notes and lab results 2025-2026")
    page.get_by_label("Purpose stated").fill("Litigation")
    page.get_by_label("the patient may revoke it in writing, and how").check()
    page.get_by_label("treatment or payment cannot depend on signing it").check()
    page.get_by_label("the recipient may redisclose the information").check()


def throttle_uploads(page, bytes_per_second: int) -> None:
    """An office uplink instead of loopback (DevTools network emulation), so the bar moves visibly."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 20, "downloadThroughput": -1,
                                                   "uploadThroughput": bytes_per_second})


def upload(page, data: bytes, name: str, *, drag: bool = False) -> None:
    page.evaluate(WATCH_PROGRESS)
    if drag:
        import base64

        page.evaluate(DROP_FILE, [name, base64.b64encode(data).decode()])
    else:
        page.locator("#upload-files").set_input_files(files=[{"name": name, "mimeType": "application/pdf",
                                                              "buffer": data}])


def wait_for_status(page, status: str, timeout: float = 30) -> None:
    """Reload the request's page until it shows `status` (the relay works in the background)."""
    deadline = time.monotonic() + timeout
    while page.locator(f'h1 [data-status="{status}"]').count() == 0:
        assert time.monotonic() < deadline, f"status never became {status}"
        time.sleep(0.5)
        page.reload()


@pytest.mark.parametrize("facility", list(FACILITY_BUTTONS))
def test_file_fix_and_submit_a_request_for_each_facility(portal_site, new_page, firm, facility, tmp_path):
    page = new_page(portal_site)
    sign_in(page, firm.requester_email)
    today = facility_today()
    fill_request(page, facility, signed_on=today - timedelta(days=100), expires_on=today - timedelta(days=2))
    # Live checks explain the problem beside the field before anything is saved.
    expired = page.locator('[data-messages-for="authorization.expires_on"] [data-code="AUTH_EXPIRED"]')
    expect(expired).to_contain_text("has expired")
    if facility == "tufts-mc":
        screenshot(page, "03-new-request-authorization-step")
    page.get_by_role("button", name="Save and add documents").click()
    expect(page.locator('h1 [data-status="draft"]')).to_be_visible()

    big_pdf = tmp_path / "authorization.pdf"
    samples.write_large_pdf(big_pdf, 2)
    throttle_uploads(page, 1_500_000)  # about 1.5 s for 2 MB: the bar moves in several steps
    upload(page, big_pdf.read_bytes(), "authorization.pdf", drag=facility == "lowell-general")
    result = page.locator(".uploads li").last
    expect(result).to_have_attribute("data-result", "clean", timeout=60_000)
    seen = page.evaluate("window.progressSeen")
    assert 100 in seen and min(seen) < 100, seen
    expect(page.locator("#documents-list")).to_contain_text("authorization.pdf")
    expect(page.locator('#checks [data-code="AUTH_EXPIRED"]')).to_contain_text("has expired")
    if facility == "tufts-mc":
        screenshot(page, "04-request-draft-with-deficiency")

    page.get_by_role("button", name="Submit request").click()
    expect(page.locator("#submit-errors")).to_contain_text("has expired")
    page.locator("#submit-errors").get_by_role("link").first.click()  # "fix this" goes to the field
    expect(page.locator('[data-messages-for="authorization.expires_on"]')).to_contain_text("has expired")
    expect(page.get_by_label("Expiration date")).to_be_visible()
    page.get_by_label("Date signed").fill(str(today - timedelta(days=3)))
    page.get_by_label("Expiration date").fill(str(today + timedelta(days=200)))
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("#ready")).to_be_visible()
    page.get_by_role("button", name="Submit request").click()
    wait_for_status(page, "routed")
    expect(page.locator("#due-date")).not_to_contain_text("Set when you submit")
    expect(page.locator("#fee-estimate")).to_contain_text("$")
    assert "Silva" not in page.title() and "Silva" not in page.url  # no PHI in titles or URLs
    if facility == "tufts-mc":
        screenshot(page, "05-request-routed")
        page.goto("/portal/requests")
        screenshot(page, "02-request-list")


def test_eicar_upload_shows_the_malware_message_and_stores_nothing(portal_site, new_page, firm):
    page = new_page(portal_site)
    sign_in(page, firm.requester_email)
    today = facility_today()
    fill_request(page, "tufts-mc", signed_on=today - timedelta(days=3), expires_on=today + timedelta(days=100))
    page.get_by_role("button", name="Save and add documents").click()
    upload(page, samples.eicar(), "scan.pdf")
    result = page.locator(".uploads li").last
    expect(result).to_have_attribute("data-result", "MALWARE_DETECTED", timeout=30_000)
    expect(result).to_contain_text("Malware detected")
    page.reload()
    expect(page.locator("#no-documents")).to_be_visible()
    screenshot(page, "06-malware-refused")


def test_staff_return_requester_resubmits_staff_fulfils_requester_downloads(portal_site, new_page, firm, db):
    requester = new_page(portal_site)
    sign_in(requester, firm.requester_email)
    today = facility_today()
    fill_request(requester, "melrosewakefield", signed_on=today - timedelta(days=3),
                 expires_on=today + timedelta(days=100))
    requester.get_by_role("button", name="Save and add documents").click()
    upload(requester, samples.minimal_pdf(), "authorization.pdf")
    expect(requester.locator(".uploads li").last).to_have_attribute("data-result", "clean")
    expect(requester.locator("#ready")).to_be_visible()
    requester.get_by_role("button", name="Submit request").click()
    wait_for_status(requester, "routed")
    request_url = requester.url

    staff = new_page(portal_site)
    sign_in(staff, make_user(db, ["facility_staff"], ["melrosewakefield"]))
    expect(staff.get_by_role("heading", level=1)).to_contain_text("Queue")
    screenshot(staff, "07-staff-queue")
    staff.goto(request_url)
    staff.get_by_role("button", name="Claim").click()
    expect(staff.locator('h1 [data-status="in_progress"]')).to_be_visible()
    staff.get_by_label("Move to").select_option("returned")
    staff.get_by_label(re.compile("incomplete", re.I)).check()
    staff.get_by_label("Note to the requester").fill("Please include page 2 of the authorization.")
    screenshot(staff, "08-staff-request-actions")
    staff.get_by_role("button", name="Update status").click()
    expect(staff.locator('h1 [data-status="returned"]')).to_be_visible()

    requester.goto(request_url)
    expect(requester.locator("#return-reasons")).to_contain_text("incomplete")
    expect(requester.locator("#return-reasons")).to_contain_text("Please include page 2")
    screenshot(requester, "09-requester-sees-return-reason")
    requester.get_by_label("Kind of document").select_option("supporting")
    upload(requester, samples.minimal_pdf(pages=2), "authorization-page-2.pdf")
    expect(requester.locator(".uploads li").last).to_have_attribute("data-result", "clean")
    requester.get_by_role("button", name="Submit request").click()
    wait_for_status(requester, "routed")

    staff.goto(request_url)
    staff.get_by_role("button", name="Claim").click()
    expect(staff.locator('h1 [data-status="in_progress"]')).to_be_visible()
    released = samples.minimal_pdf(pages=4, text="released records")
    upload(staff, released, "released-records.pdf")
    expect(staff.locator(".uploads li").last).to_have_attribute("data-result", "clean")
    staff.reload()
    staff.get_by_label("Move to").select_option("fulfilled")
    staff.get_by_role("button", name="Update status").click()
    expect(staff.locator('h1 [data-status="fulfilled"]')).to_be_visible()

    requester.goto(request_url)
    expect(requester.locator("#released")).to_be_visible()
    screenshot(requester, "10-fulfilled-download")
    with requester.expect_download() as download:
        requester.locator('[data-download="release"]').click()
    assert open(download.value.path(), "rb").read() == released
    assert download.value.suggested_filename == "released-records.pdf"


def test_second_firm_cannot_open_the_first_firms_request(portal_site, new_page, firm, db):
    owner = new_page(portal_site)
    sign_in(owner, firm.requester_email)
    today = facility_today()
    fill_request(owner, "lowell-general", signed_on=today - timedelta(days=3), expires_on=today + timedelta(days=90))
    owner.get_by_role("button", name="Save and add documents").click()
    expect(owner.locator('h1 [data-status="draft"]')).to_be_visible()
    stranger = new_page(portal_site)
    sign_in(stranger, make_tenant(db).requester_email)
    response = stranger.goto(owner.url.split("#")[0])
    assert response.status == 404
    expect(stranger.get_by_role("heading", level=1)).to_have_text("Page not found")
    expect(stranger.locator("main")).not_to_contain_text("Silva")
    screenshot(stranger, "11-other-firm-404")


def test_idle_timeout_signs_the_user_out(start_gateway, new_page, firm):
    # Its own gateway with a 10-second idle limit (production: 15 minutes), same database.
    site = start_gateway(portal_idle_timeout=10).url.replace("127.0.0.1", "localhost")
    page = new_page(site)
    sign_in(page, firm.requester_email)
    page.goto("/portal/requests")
    expect(page.locator("#idle-warning")).to_be_visible(timeout=15_000)
    expect(page).to_have_url(re.compile(r"/portal/sign-in\?reason=idle"), timeout=20_000)
    expect(page.locator("#signed-out-message")).to_contain_text("without activity")
    screenshot(page, "01-sign-in-after-idle")
    response = page.goto("/portal/requests")
    assert "/portal/sign-in" in page.url and response.status == 200  # redirected: the session is over


def test_keyboard_only_sign_in_and_first_step(portal_site, new_page, firm):
    """No mouse: Tab, typing, arrow keys and Enter reach every control that matters on the way in."""
    page = new_page(portal_site)
    page.goto("/portal/sign-in")
    page.keyboard.press("Tab")  # the skip link comes first
    expect(page.get_by_text("Skip to main content")).to_be_focused()
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "f-email":
            break
    page.keyboard.type(firm.requester_email)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_contain_text("requests")
    page.goto("/portal/requests/new")
    page.locator("#facility-lowell-general").focus()
    page.keyboard.press("ArrowRight")  # radio buttons move with the arrow keys
    expect(page.locator("#facility-melrosewakefield")).to_be_checked()
    page.locator("#step-facility").get_by_role("button", name="Next").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#step-patient")).to_be_focused()
    expect(page.get_by_label("First name")).to_be_visible()
    assert "Silva" not in page.title()


def test_a_release_stays_hidden_from_the_requester_until_fulfilled_and_staff_can_withdraw_it(portal_site, new_page,
                                                                                             firm, db):
    requester = new_page(portal_site)
    sign_in(requester, firm.requester_email)
    today = facility_today()
    fill_request(requester, "tufts-mc", signed_on=today - timedelta(days=3), expires_on=today + timedelta(days=100))
    requester.get_by_role("button", name="Save and add documents").click()
    upload(requester, samples.minimal_pdf(), "authorization.pdf")
    expect(requester.locator(".uploads li").last).to_have_attribute("data-result", "clean", timeout=60_000)
    requester.get_by_role("button", name="Submit request").click()
    wait_for_status(requester, "routed")
    request_url = requester.url.split("#")[0]

    staff = new_page(portal_site)
    sign_in(staff, make_user(db, ["facility_staff"], ["tufts-mc"]))
    staff.goto(request_url)
    staff.get_by_role("button", name="Claim").click()
    expect(staff.locator('h1 [data-status="in_progress"]')).to_be_visible()
    upload(staff, samples.minimal_pdf(pages=2, text="wrong patient"), "wrong-records.pdf")
    expect(staff.locator(".uploads li").last).to_have_attribute("data-result", "clean", timeout=60_000)
    staff.reload()
    wrong_id = staff.locator("form[data-withdraw]").first.get_attribute("data-withdraw")

    # The requester sees nothing of it: not in the documents, not released, not on the timeline, not by URL.
    requester.goto(request_url)
    expect(requester.locator("#documents-list")).not_to_contain_text("wrong-records.pdf")
    expect(requester.locator("#released")).to_have_count(0)
    expect(requester.locator(f'[data-document="{wrong_id}"]')).to_have_count(0)
    assert requester.goto(f"{request_url}/documents/{wrong_id}/download").status == 404

    # Staff withdraw the file uploaded to the wrong request; then release the right one.
    staff.goto(request_url)
    staff.locator(f'form[data-withdraw="{wrong_id}"]').get_by_role("button", name="Withdraw").click()
    expect(staff.locator("#documents-list")).not_to_contain_text("wrong-records.pdf")
    released = samples.minimal_pdf(pages=3, text="released records")
    upload(staff, released, "records.pdf")
    expect(staff.locator(".uploads li").last).to_have_attribute("data-result", "clean", timeout=60_000)
    staff.reload()
    requester.goto(request_url)
    expect(requester.locator("#documents-list")).not_to_contain_text("records.pdf")
    staff.get_by_label("Move to").select_option("fulfilled")
    staff.get_by_role("button", name="Update status").click()
    expect(staff.locator('h1 [data-status="fulfilled"]')).to_be_visible()

    requester.goto(request_url)
    expect(requester.locator("#released")).to_be_visible()
    expect(requester.locator("#documents-list")).not_to_contain_text("wrong-records.pdf")
    with requester.expect_download() as download:
        requester.locator('[data-download="release"]').click()
    assert open(download.value.path(), "rb").read() == released

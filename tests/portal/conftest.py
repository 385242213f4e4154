"""Browser fixtures: Debian's Chromium driven by Playwright against the gateway served by gunicorn,
with an outbox relay running beside it as in production (so submitted requests become `routed`); and
`browser`, Flask's test client signed in to the portal as the module's `firm`'s requester."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.live import settings_environment
from tests.fixtures.logs import new_log_path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# The browser tests photograph the portal's main pages.  A test run writes them under the ignored var/ folder
# (so `git status` stays clean after `make test`); `make screenshots` points this at docs/portal-screenshots
# to refresh the pictures the README shows, on purpose.
SCREENSHOTS = Path(os.environ.get("GATEWAY_SCREENSHOTS_DIR")
                   or Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "portal-screenshots")


@pytest.fixture
def browser(app, firm):
    """The portal through Flask's test client, signed in as the requester of the module's `firm` fixture."""
    from tests.portal.helpers import portal_client, portal_sign_in

    client = portal_client(app)
    client.csrf = portal_sign_in(client, firm.requester_email)
    return client


@pytest.fixture(scope="session")
def chromium():
    """One headless Chromium for the session (never `playwright install`: the system's browser)."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is missing; `make test` installs it")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Relay:
    """`gateway outbox relay` in a subprocess with the test settings."""

    def __init__(self, settings, workdir: Path):
        self.log = new_log_path("relay", workdir).open("wb")
        env = {**os.environ, **settings_environment(settings)}
        self.process = subprocess.Popen([str(Path(sys.executable).parent / "gateway"), "outbox", "relay"],
                                        env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


@pytest.fixture(scope="module")
def portal_site(start_gateway, settings, tmp_path_factory):
    """The gateway under gunicorn plus a running outbox relay; yields the base URL."""
    gateway = start_gateway()
    relay = Relay(settings, tmp_path_factory.mktemp("relay"))
    yield gateway.url.replace("127.0.0.1", "localhost")
    relay.stop()


@pytest.fixture
def new_page(chromium):
    """Factory: a fresh browser context (its own cookies) and page; closed after the test."""
    contexts = []

    def make(base_url: str):
        context = chromium.new_context(base_url=base_url, accept_downloads=True,
                                       viewport={"width": 1280, "height": 900})
        context.set_default_timeout(20_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def screenshot(page, name: str) -> None:
    """Save a full-page screenshot of the current page for the README."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

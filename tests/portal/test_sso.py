"""Hospital sign-on against a real OpenID Connect provider (panva's oidc-provider, started by the tests):
the authorization code flow with PKCE, the provider's own login and consent pages, RS256 ID tokens.

The browser tests drive Chromium through the gunicorn-served gateway; the refusal tests drive the same
provider with `requests` (its login and consent forms) and the gateway's test client (a browser's cookie
jar for the gateway), which lets them tamper with and replay the callback."""

from __future__ import annotations

import dataclasses
import re
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest
import requests
from playwright.sync_api import expect
from sqlalchemy import select

from gateway.app import create_app
from gateway.audit.models import AuditEvent
from gateway.auth.hospital_sso import SsoRefused
from gateway.auth.models import User
from gateway.auth.sso_accounts import ExternalIdentity
from infra.localstack.ports import find_free_port
from tests.factories import make_user, unique
from tests.fixtures.oidc_provider import Account, start_oidc_provider  # noqa: F401  (fixture)
from tests.portal.helpers import portal_client
from tests.portal.test_accessibility import audit, axe_source  # noqa: F401  (fixture)

# One database (tests/conftest.py): the OpenID Connect exchange with a real provider.
pytestmark = pytest.mark.one_database

HTTPS_CALLBACK = "https://localhost/portal/sso/callback"
HOSPITAL_BUTTON = "Sign in with your hospital account"


@dataclasses.dataclass
class World:
    provider: object
    accounts: dict[str, Account]
    live_port: int
    app: object
    staff_email: str


def account(login: str, groups: list[str], email: str | None = None, **kw) -> Account:
    return Account(login=f"{login}-{unique('sub')}", email=email or f"{unique(login)}@hospital.test",
                   groups=groups, **kw)


@pytest.fixture(scope="module")
def world(start_oidc_provider, settings, db):  # noqa: F811  (fixture)
    """One provider for the module, registered with both gateways' callbacks, and its people."""
    # A records clerk who already had a password account: the provider's first sign-in links it.
    staff_email = make_user(db, ["facility_staff"], ["lowell-general"])
    # An auditor's address: the provider must never become a way into any account but a records clerk's.
    auditor_email = make_user(db, ["auditor"])
    accounts = {
        "clerk": account("clerk", ["records-lowell", "cafeteria"]),
        "nurse": account("nurse", ["records-tufts"]),
        "visitor": account("visitor", ["cafeteria"]),
        "leaver": account("leaver", "records-lowell"),
        "existing": account("existing", ["records-tufts"], email=staff_email),
        "lookalike": account("lookalike", ["records-lowell"], email=auditor_email),
    }
    live_port = find_free_port()
    provider = start_oidc_provider(
        redirect_uris=[f"http://localhost:{live_port}/portal/sso/callback", HTTPS_CALLBACK],
        accounts=list(accounts.values()))
    app = create_app(dataclasses.replace(settings, portal_url="https://localhost", **provider.gateway_settings()))
    app.config["TESTING"] = False
    yield World(provider, accounts, live_port, app, staff_email)
    app.extensions["gateway"].db.dispose()


# -- driving the provider's pages over HTTP ---------------------------------------------------------------

def through_provider(authorize_url: str, login: str, callback: str = HTTPS_CALLBACK) -> str:
    """Follow the provider's redirects and fill its login and consent forms; the callback URL it sends
    the browser to."""
    http = requests.Session()
    response = http.get(authorize_url, allow_redirects=False, timeout=10)
    for _ in range(12):
        location = response.headers.get("Location")
        if location:
            target = urljoin(response.url, location)
            if target.startswith(callback):
                return target
            response = http.get(target, allow_redirects=False, timeout=10)
            continue
        assert response.status_code == 200, response.text[:500]
        action = re.search(r'<form[^>]*action="([^"]+)"', response.text).group(1)
        prompt = re.search(r'name="prompt" value="(\w+)"', response.text).group(1)
        form = {"prompt": prompt} | ({"login": login, "password": "any password"} if prompt == "login" else {})
        response = http.post(urljoin(response.url, action), data=form, allow_redirects=False, timeout=10)
    raise AssertionError("the provider never sent the browser back")


def start(client) -> str:
    """Click "Sign in with your hospital account": the provider's authorization URL."""
    sign_in_page = client.get("/portal/sign-in").get_data(as_text=True)
    assert HOSPITAL_BUTTON in sign_in_page
    response = client.get("/portal/sso/start")
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    return response.headers["Location"]


def callback_path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def refused_code(response) -> str:
    match = re.search(r'data-error-code="([A-Z_]+)"', response.get_data(as_text=True))
    assert match, response.get_data(as_text=True)[:500]
    return match.group(1)


def session_cookie(client):
    return client.get_cookie("__Host-rgw_session")


def audit_actions(world: World, since: int) -> list[tuple[str, str]]:
    with world.app.extensions["gateway"].db.transaction() as session:
        rows = session.execute(select(AuditEvent.action, AuditEvent.result)
                               .where(AuditEvent.seq > since, AuditEvent.action.like("%sso%"))
                               .order_by(AuditEvent.seq)).all()
    return [tuple(row) for row in rows]


def audit_head(world: World) -> int:
    from sqlalchemy import func

    with world.app.extensions["gateway"].db.transaction() as session:
        return session.scalar(select(func.max(AuditEvent.seq))) or 0


def user_by_email(world: World, email: str) -> User | None:
    with world.app.extensions["gateway"].db.transaction() as session:
        user = session.scalars(select(User).where(User.email == email)).one_or_none()
        if user is not None:
            session.expunge(user)
        return user


# -- the browser ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def live_site(world, start_gateway):
    gateway = start_gateway(port=world.live_port, portal_url=f"http://localhost:{world.live_port}",
                            **world.provider.gateway_settings())
    return gateway.url.replace("127.0.0.1", "localhost")


def test_staff_sign_in_with_the_hospital_account_in_chromium(world, live_site, new_page, axe_source):  # noqa: F811
    page = new_page(live_site)
    page.goto("/portal/sign-in")
    audit(page, axe_source, "sign-in with hospital sign-on")
    page.get_by_role("link", name=HOSPITAL_BUTTON).click()
    # The provider's own pages (oidc-provider's interactions): sign in, then consent.
    expect(page).to_have_url(re.compile(re.escape(world.provider.issuer) + r"/interaction/"))
    page.locator('input[name="login"]').fill(world.accounts["clerk"].login)
    page.locator('input[name="password"]').fill("any password")
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("button", name="Continue").click()
    # Back at the gateway, signed in, on the records team's queue.
    expect(page).to_have_url(re.compile(r"/portal/queue"))
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    user = user_by_email(world, world.accounts["clerk"].email)
    assert user.roles == ["facility_staff"] and user.facilities == ["lowell-general"]

    # An account of the provider that no records team maps to: a clear refusal page, no session.
    other = new_page(live_site)
    other.goto("/portal/sign-in")
    other.get_by_role("link", name=HOSPITAL_BUTTON).click()
    other.locator('input[name="login"]').fill(world.accounts["visitor"].login)
    other.locator('input[name="password"]').fill("any password")
    other.get_by_role("button", name="Sign-in").click()
    other.get_by_role("button", name="Continue").click()
    expect(other.get_by_role("heading", name="You are not signed in")).to_be_visible()
    expect(other.get_by_text("SSO_NO_FACILITY")).to_be_visible()
    audit(other, axe_source, "hospital sign-on refused")
    other.goto("/portal/queue")
    expect(other).to_have_url(re.compile(r"/portal/sign-in"))


def test_the_signed_in_page_passes_axe(world, live_site, new_page, axe_source):  # noqa: F811
    """The page between the provider and the queue, held still (it moves on at once by itself): the flow
    starts in this browser, the provider's pages are answered over HTTP, and the browser then opens the
    callback with the page's Refresh header taken out (Playwright cannot hold a redirect's target)."""
    page = new_page(live_site)
    started = page.request.get(f"{live_site}/portal/sso/start", max_redirects=0)
    assert started.status == 303
    callback = through_provider(started.headers["location"], world.accounts["nurse"].login,
                                callback=f"{live_site}/portal/sso/callback")

    def hold(route):
        response = route.fetch(max_redirects=0)
        headers = {k: v for k, v in response.headers.items() if k.lower() != "refresh"}
        route.fulfill(response=response, headers=headers)

    page.route(re.compile(r".*/portal/sso/callback.*"), hold)
    page.goto(callback)
    expect(page.get_by_role("heading", name="You are signed in")).to_be_visible()
    audit(page, axe_source, "hospital sign-on signed in")
    page.get_by_role("link", name="Continue to your work").click()
    expect(page).to_have_url(re.compile(r"/portal/queue"))


# -- refusals, over HTTP --------------------------------------------------------------------------------

def test_sign_in_links_an_existing_staff_account_and_sets_its_facilities(world):
    client = portal_client(world.app)
    callback = through_provider(start(client), world.accounts["existing"].login)
    response = client.get(callback_path(callback))
    assert response.status_code == 200
    assert response.headers["Refresh"] == "0; url=/portal/"
    assert session_cookie(client) is not None
    assert client.get("/portal/queue").status_code == 200
    user = user_by_email(world, world.staff_email)
    # The claim decides: the records-tufts group maps to two facilities; the earlier one is gone.
    assert user.facilities == ["melrosewakefield", "tufts-mc"]
    with world.app.extensions["gateway"].db.transaction() as session:
        identity = session.scalars(select(ExternalIdentity).where(ExternalIdentity.user_id == user.id)).one()
        assert (identity.issuer, identity.subject) == (world.provider.issuer, world.accounts["existing"].login)


def test_a_replayed_or_tampered_callback_is_refused(world):
    client = portal_client(world.app)
    callback = through_provider(start(client), world.accounts["nurse"].login)
    head = audit_head(world)
    # The state altered: not this browser's flow.
    forged = callback.replace("state=", "state=x")
    refused = client.get(callback_path(forged))
    assert refused.status_code == 400 and refused_code(refused) == "SSO_STATE_INVALID"
    assert session_cookie(client) is None
    # The flow cookie is gone with the refusal; a callback from another browser (no cookie) is refused too.
    assert client.get(callback_path(callback)).status_code == 400

    # A fresh flow, completed once; then the same callback again, cookie and all: the flow is used up.
    client = portal_client(world.app)
    callback = through_provider(start(client), world.accounts["nurse"].login)
    state = parse_qs(urlsplit(callback).query)["state"][0]
    assert client.get(callback_path(callback)).status_code == 200
    signed_in = session_cookie(client)
    client.set_cookie("__Host-rgw_sso", state, domain="localhost", secure=True)
    replayed = client.get(callback_path(callback))
    assert replayed.status_code == 400 and refused_code(replayed) == "SSO_STATE_INVALID"

    # The used code under a new flow of the same browser: the provider refuses it (used, other verifier).
    old_code = parse_qs(urlsplit(callback).query)["code"][0]
    authorize = start(client)
    new_state = parse_qs(urlsplit(authorize).query)["state"][0]
    stolen = client.get("/portal/sso/callback?" + urlencode({"code": old_code, "state": new_state}))
    assert stolen.status_code == 502 and refused_code(stolen) == "SSO_EXCHANGE_FAILED"
    # A tampered code under a valid state: refused the same way.
    client = portal_client(world.app)
    callback = through_provider(start(client), world.accounts["nurse"].login)
    query = parse_qs(urlsplit(callback).query)
    tampered = client.get("/portal/sso/callback?" + urlencode({"code": query["code"][0][:-2] + "xx",
                                                               "state": query["state"][0]}))
    assert tampered.status_code == 502 and refused_code(tampered) == "SSO_EXCHANGE_FAILED"
    assert session_cookie(client) is None
    assert signed_in is not None
    actions = audit_actions(world, head)
    assert actions.count(("auth.sso.state_invalid", "denied")) == 3
    assert actions.count(("auth.sso.exchange_failed", "denied")) == 2


def test_a_provider_error_is_a_page_not_a_500(world):
    client = portal_client(world.app)
    authorize = start(client)
    state = parse_qs(urlsplit(authorize).query)["state"][0]
    response = client.get("/portal/sso/callback?" + urlencode({"error": "access_denied", "state": state,
                                                               "iss": world.provider.issuer}))
    assert response.status_code == 401 and refused_code(response) == "SSO_PROVIDER_ERROR"
    assert "cancelled or refused" in response.get_data(as_text=True)
    assert session_cookie(client) is None


def test_an_unmapped_account_is_refused_and_audited(world):
    client = portal_client(world.app)
    head = audit_head(world)
    callback = through_provider(start(client), world.accounts["visitor"].login)
    response = client.get(callback_path(callback))
    assert response.status_code == 403 and refused_code(response) == "SSO_NO_FACILITY"
    assert session_cookie(client) is None
    assert user_by_email(world, world.accounts["visitor"].email) is None
    assert ("auth.sso.no_facility", "denied") in audit_actions(world, head)


def test_an_account_other_than_a_clerks_is_never_linked(world):
    lookalike = world.accounts["lookalike"]
    client = portal_client(world.app)
    head = audit_head(world)
    response = client.get(callback_path(through_provider(start(client), lookalike.login)))
    assert response.status_code == 409 and refused_code(response) == "SSO_EMAIL_IN_USE"
    assert session_cookie(client) is None
    assert user_by_email(world, lookalike.email).roles == ["auditor"]
    with world.app.extensions["gateway"].db.transaction() as session:
        assert session.scalars(select(ExternalIdentity).where(
            ExternalIdentity.subject == lookalike.login)).one_or_none() is None
    assert ("auth.sso.email_in_use", "denied") in audit_actions(world, head)


def test_a_deactivated_linked_user_is_refused(world):
    leaver = world.accounts["leaver"]
    client = portal_client(world.app)
    assert client.get(callback_path(through_provider(start(client), leaver.login))).status_code == 200
    user = user_by_email(world, leaver.email)
    assert user.facilities == ["lowell-general"]
    with world.app.extensions["gateway"].db.transaction() as session:
        session.get(User, user.id).active = False
    head = audit_head(world)
    client = portal_client(world.app)
    response = client.get(callback_path(through_provider(start(client), leaver.login)))
    assert response.status_code == 403 and refused_code(response) == "SSO_ACCOUNT_INACTIVE"
    assert session_cookie(client) is None
    assert ("auth.sso.inactive", "denied") in audit_actions(world, head)


def test_the_id_token_is_judged_by_the_gateway_clock_and_the_flow_nonce(world):
    """Real ID tokens from the provider, each from its own flow, checked at another moment or for another flow."""
    sso = world.app.extensions["gateway.sso"]
    now = int(world.app.extensions["gateway"].clock.now().timestamp())

    def fresh_code() -> tuple:
        flow, url = sso.begin()
        return flow, parse_qs(urlsplit(through_provider(url, world.accounts["nurse"].login)).query)["code"][0]

    flow, code = fresh_code()
    assert sso.finish(flow, code=code, now=now)["sub"] == world.accounts["nurse"].login
    flow, code = fresh_code()
    with pytest.raises(SsoRefused) as expired:  # the provider's ID tokens live an hour
        sso.finish(flow, code=code, now=now + 2 * 3600)
    assert expired.value.code == "SSO_ID_TOKEN_INVALID"
    flow, code = fresh_code()
    with pytest.raises(SsoRefused) as early:  # "issued" two hours after the gateway's now
        sso.finish(flow, code=code, now=now - 2 * 3600)
    assert early.value.code == "SSO_ID_TOKEN_INVALID"
    flow, code = fresh_code()
    with pytest.raises(SsoRefused) as other_nonce:
        sso.finish(dataclasses.replace(flow, nonce="another flow's nonce"), code=code, now=now)
    assert other_nonce.value.code == "SSO_ID_TOKEN_INVALID"
    flow, code = fresh_code()
    with pytest.raises(SsoRefused) as other_verifier:  # PKCE: the code is useless without its verifier
        sso.finish(dataclasses.replace(flow, verifier=flow.verifier[::-1]), code=code, now=now)
    assert other_verifier.value.code == "SSO_EXCHANGE_FAILED"


def test_id_tokens_not_signed_by_the_provider_are_refused(world):
    """The real provider's discovery and keys; tokens made here with the wrong key or algorithm."""
    import jwt as pyjwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    sso = world.app.extensions["gateway.sso"]
    metadata = sso.metadata()
    now = int(world.app.extensions["gateway"].clock.now().timestamp())
    claims = {"iss": world.provider.issuer, "aud": world.provider.client_id, "sub": "someone", "iat": now,
              "exp": now + 300, "nonce": "n"}
    algorithms = sso.algorithms(metadata)
    assert algorithms == ["RS256"]
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = {
        "another key": pyjwt.encode(claims, stranger, algorithm="RS256", headers={"kid": "test-rs256"}),
        "HS256 with the client secret": pyjwt.encode(claims, world.provider.client_secret, algorithm="HS256",
                                                     headers={"kid": "test-rs256"}),
        "unsigned": pyjwt.encode(claims, None, algorithm="none"),
    }
    for name, token in forged.items():
        with pytest.raises(SsoRefused) as refused:
            sso.validate_id_token(token, nonce="n", access_token=None, now=now, algorithms=algorithms)
        assert refused.value.code == "SSO_ID_TOKEN_INVALID", name


def test_an_unreachable_provider_is_a_page_and_sign_on_off_is_a_404(app, settings, world):
    # Off (the session's app): no button, and the routes are not there.
    client = portal_client(app)
    assert HOSPITAL_BUTTON not in client.get("/portal/sign-in").get_data(as_text=True)
    assert client.get("/portal/sso/start").status_code == 404
    assert client.get("/portal/sso/callback?code=c&state=s").status_code == 404
    # On, but nobody answers at the issuer: 503 with its code, not a 500.
    dead = create_app(dataclasses.replace(settings, portal_url="https://localhost", **(
        world.provider.gateway_settings() | {"sso_issuer": f"http://127.0.0.1:{find_free_port()}"})))
    dead.config["TESTING"] = False
    try:
        response = portal_client(dead).get("/portal/sso/start")
        assert response.status_code == 503 and refused_code(response) == "SSO_UNAVAILABLE"
    finally:
        dead.extensions["gateway"].db.dispose()

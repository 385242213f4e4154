"""Requester admins' pages through Flask's test client on both databases: API keys and webhooks, each
secret shown once, the same services, tenant guard and audit entries as the API."""

from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy import func, select

from gateway.audit.models import AuditEvent
from gateway.auth.models import ApiKey
from gateway.crypto import unseal
from gateway.webhooks import service as webhooks_service
from gateway.webhooks.models import Webhook
from tests.factories import bearer, make_tenant
from tests.portal.helpers import portal_client, portal_sign_in

# One database (tests/conftest.py): page rendering over service functions the API tests run on both databases.
pytestmark = pytest.mark.one_database

KEY = re.compile(r"rgw_[a-z0-9]{16}_[A-Za-z0-9]{40}")
SHOWN_SECRET = re.compile(r'id="new-secret" class="secret" value="([^"]+)"')
PUBLIC_URL = "https://93.184.216.34/hooks"  # an IP literal: passes the SSRF guard without DNS, never contacted
STATUS = "request.status_changed"


@pytest.fixture
def firm(db):
    return make_tenant(db)


@pytest.fixture
def admin(app, firm):
    client = portal_client(app)
    client.csrf = portal_sign_in(client, firm.admin_email)
    return client


def text(response) -> str:
    return response.get_data(as_text=True)


def create_key(admin, **form):
    data = {"name": "Case system", "scopes": ["requests:read", "requests:write"], "expires_in_days": "30",
            "csrf_token": admin.csrf, **form}
    return admin.post("/portal/api-keys", data=data)


def create_webhook(admin, url: str = PUBLIC_URL, events=(STATUS,)):
    return admin.post("/portal/webhooks", data={"url": url, "events": list(events), "csrf_token": admin.csrf})


def keys_of(db, org_id: str) -> int:
    with db.transaction() as session:
        return session.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.org_id == org_id))


def audit_actions(db, object_id: str) -> list[str]:
    with db.transaction() as session:
        return session.scalars(select(AuditEvent.action).where(AuditEvent.object_id == object_id)).all()


def test_requesters_get_the_403_page(app, firm):
    client = portal_client(app)
    csrf = portal_sign_in(client, firm.requester_email)
    for path in ("/portal/api-keys", "/portal/webhooks"):
        response = client.get(path)
        assert response.status_code == 403 and "text/html" in response.content_type
        assert 'data-error-status="403"' in text(response)
    refused = client.post("/portal/api-keys", data={"scopes": ["requests:read"], "csrf_token": csrf})
    assert refused.status_code == 403
    assert client.post("/portal/webhooks", data={"url": PUBLIC_URL, "events": [STATUS],
                                                 "csrf_token": csrf}).status_code == 403
    nav = text(client.get("/portal/requests"))
    assert "/portal/api-keys" not in nav and "/portal/webhooks" not in nav


def test_admin_pages_show_forms_with_labelled_fields(admin):
    keys = text(admin.get("/portal/api-keys"))
    for field in ("f-name", "f-expires_in_days", "f-scopes-requests:read"):
        assert f'for="{field}"' in keys and f'id="{field}"' in keys
    hooks = text(admin.get("/portal/webhooks"))
    assert 'for="f-url"' in hooks and 'id="f-url"' in hooks and f'for="f-events-{STATUS}"' in hooks
    assert "<script>" not in keys + hooks and "style=" not in keys + hooks
    assert '<title>API keys' in keys and '<title>Webhooks' in hooks


def test_a_new_key_is_shown_once_and_works(app, db, firm, admin):
    response = create_key(admin)
    page = text(response)
    assert response.status_code == 201 and response.headers["Cache-Control"] == "no-store"
    assert "Copy this key now; it will not be shown again" in page
    key = SHOWN_SECRET.search(page).group(1)
    assert KEY.fullmatch(key) and page.count(key) == 1

    assert app.test_client().get("/v1/requests", headers=bearer(key)).status_code == 200
    listing = text(admin.get("/portal/api-keys"))
    assert key not in listing and not KEY.search(listing)
    public_id = key.split("_")[1]
    assert f"rgw_{public_id}_" in listing and "Case system" in listing

    with db.transaction() as session:
        row = session.scalars(select(ApiKey).where(ApiKey.public_id == public_id)).one()
        assert row.org_id == firm.org_id and row.scopes == ["requests:read", "requests:write"]
        assert row.expires_at is not None and key not in row.secret_hash
        created = session.scalars(select(AuditEvent).where(AuditEvent.action == "api_key.create",
                                                           AuditEvent.object_id == row.id)).one()
    assert created.org_id == firm.org_id and created.actor == f"user:{firm.admin_id}"


def test_revoking_a_key_stops_it_at_once(app, db, admin):
    key = SHOWN_SECRET.search(text(create_key(admin))).group(1)
    with db.transaction() as session:
        key_id = session.scalars(select(ApiKey.id).where(ApiKey.public_id == key.split("_")[1])).one()
    api = app.test_client()
    assert api.get("/v1/requests", headers=bearer(key)).status_code == 200

    response = admin.post(f"/portal/api-keys/{key_id}/revoke", data={"csrf_token": admin.csrf})
    assert response.status_code == 303 and response.headers["Location"].startswith("/portal/api-keys")
    assert api.get("/v1/requests", headers=bearer(key)).status_code == 401
    listing = text(admin.get(response.headers["Location"]))
    assert 'data-key-state="revoked"' in listing and "was revoked" in listing
    assert "api_key.revoke" in audit_actions(db, key_id)
    again = admin.post(f"/portal/api-keys/{key_id}/revoke", data={"csrf_token": admin.csrf})
    assert again.status_code == 303 and audit_actions(db, key_id).count("api_key.revoke") == 1


def test_another_orgs_key_is_the_404_page_and_keeps_working(app, db, admin):
    other = make_tenant(db)
    response = admin.post(f"/portal/api-keys/{other.api_key_id}/revoke", data={"csrf_token": admin.csrf})
    assert response.status_code == 404 and "Page not found" in text(response)
    missing = admin.post(f"/portal/api-keys/{uuid.uuid4()}/revoke", data={"csrf_token": admin.csrf})
    assert missing.status_code == 404
    assert app.test_client().get("/v1/requests", headers=bearer(other.api_key)).status_code == 200
    assert "access.denied" in audit_actions(db, other.api_key_id)
    assert other.api_key_id not in text(admin.get("/portal/api-keys"))


@pytest.mark.parametrize(("form", "field"), [
    ({"scopes": []}, "scopes"),
    ({"expires_in_days": "0"}, "expires_in_days"),
    ({"expires_in_days": "731"}, "expires_in_days"),
    ({"expires_in_days": "soon"}, "expires_in_days"),
    ({"name": "n" * 101}, "name"),
    ({"scopes": ["requests:delete"]}, "scopes"),
])
def test_invalid_key_forms_are_422_with_a_linked_error_summary(db, firm, admin, form, field):
    response = create_key(admin, **form)
    page = text(response)
    assert response.status_code == 422 and 'class="error-summary"' in page
    assert f'href="#f-{field}"' in page and f'id="f-{field}"' in page
    assert keys_of(db, firm.org_id) == 1  # only the factory's key
    assert not KEY.search(page)


def test_the_refused_form_keeps_what_was_typed(admin):
    page = text(create_key(admin, name="Billing robot", scopes=["documents:read"], expires_in_days="0"))
    assert 'value="Billing robot"' in page
    assert re.search(r'id="f-scopes-documents:read"[^>]*checked', page)
    assert 'href="#f-expires_in_days"' in page and 'href="#f-scopes"' not in page


def test_a_new_webhook_shows_its_secret_once(db, settings, firm, admin):
    response = create_webhook(admin)
    page = text(response)
    assert response.status_code == 201 and response.headers["Cache-Control"] == "no-store"
    assert "Copy this secret now; it will not be shown again" in page
    secret = SHOWN_SECRET.search(page).group(1)
    with db.transaction() as session:
        row = session.scalars(select(Webhook).where(Webhook.org_id == firm.org_id)).one()
        assert row.url == PUBLIC_URL and row.events == [STATUS] and row.active
        assert secret not in row.secret_sealed
        assert unseal(settings.secret_key, row.secret_sealed, purpose="webhook") == secret
    assert "webhook.create" in audit_actions(db, row.id)
    listing = text(admin.get("/portal/webhooks"))
    assert secret not in listing and PUBLIC_URL in listing and 'data-webhook-state="active"' in listing


def test_deliveries_are_listed_with_their_state(db, firm, admin):
    create_webhook(admin)
    with db.transaction() as session:
        webhooks_service.emit(session, org_id=firm.org_id, event_type=STATUS,
                              data={"request_id": str(uuid.uuid4()), "status": "routed"})
    listing = text(admin.get("/portal/webhooks"))
    assert 'data-delivery-state="pending"' in listing and STATUS in listing


@pytest.mark.parametrize(("url", "message"), [
    ("http://127.0.0.1/", "The webhook URL must use https."),
    ("https://127.0.0.1/hook", "resolves to a loopback, private, link-local or otherwise internal address"),
    ("https://169.254.169.254/latest/meta-data", "resolves to a loopback, private, link-local"),
    ("https://user:pw@93.184.216.34/hook", "must not contain a user name or password"),
])
def test_a_refused_url_is_422_with_the_apis_message_beside_the_field(db, firm, admin, url, message):
    response = create_webhook(admin, url=url)
    page = text(response)
    assert response.status_code == 422 and 'href="#f-url"' in page
    beside = re.search(r'<p class="field-error" id="f-url-error-1">(.*?)</p>', page, re.S).group(1)
    assert message in beside
    assert re.search(r'id="f-url"[^>]*aria-invalid="true"', page, re.S)
    assert f'value="{url}"' in page  # what was typed is kept
    with db.transaction() as session:
        assert session.scalars(select(Webhook).where(Webhook.org_id == firm.org_id)).all() == []
        blocked = session.scalars(select(AuditEvent).where(AuditEvent.org_id == firm.org_id,
                                                           AuditEvent.action == "webhook.create")).all()
    assert [e.result for e in blocked] == ["blocked"]


def test_webhook_form_needs_a_url_and_an_event(admin):
    response = create_webhook(admin, url="", events=())
    page = text(response)
    assert response.status_code == 422
    assert 'href="#f-url"' in page and 'href="#f-events"' in page


def test_deleting_a_webhook_makes_it_inactive(app, db, firm, admin):
    create_webhook(admin)
    with db.transaction() as session:
        webhook_id = session.scalars(select(Webhook.id).where(Webhook.org_id == firm.org_id)).one()
        webhooks_service.emit(session, org_id=firm.org_id, event_type=STATUS,
                              data={"request_id": str(uuid.uuid4()), "status": "routed"})

    other = portal_client(app)
    other.csrf = portal_sign_in(other, make_tenant(db).admin_email)
    foreign = other.post(f"/portal/webhooks/{webhook_id}/delete", data={"csrf_token": other.csrf})
    assert foreign.status_code == 404 and "Page not found" in text(foreign)

    response = admin.post(f"/portal/webhooks/{webhook_id}/delete", data={"csrf_token": admin.csrf})
    assert response.status_code == 303 and response.headers["Location"].startswith("/portal/webhooks")
    with db.transaction() as session:
        row = session.get(Webhook, webhook_id)
        assert not row.active and row.deactivated_at is not None
    assert "webhook.delete" in audit_actions(db, webhook_id)
    listing = text(admin.get(response.headers["Location"]))
    assert 'data-webhook-state="inactive"' in listing and 'data-webhook-state="active"' not in listing
    again = admin.post(f"/portal/webhooks/{webhook_id}/delete", data={"csrf_token": admin.csrf})
    assert again.status_code == 404


def test_posts_without_the_csrf_token_are_the_403_page(db, firm, admin):
    response = admin.post("/portal/api-keys", data={"name": "x", "scopes": ["requests:read"]})
    assert response.status_code == 403 and "expired" in text(response)
    assert keys_of(db, firm.org_id) == 1
    revoke = admin.post(f"/portal/api-keys/{firm.api_key_id}/revoke", data={})
    assert revoke.status_code == 403
    hook = admin.post("/portal/webhooks", data={"url": PUBLIC_URL, "events": [STATUS]})
    assert hook.status_code == 403
    cross_site = admin.post("/portal/api-keys", data={"scopes": ["requests:read"], "csrf_token": admin.csrf},
                            headers={"Origin": "https://evil.example"})
    assert cross_site.status_code == 403
    assert keys_of(db, firm.org_id) == 1
    with db.transaction() as session:
        assert session.scalars(select(Webhook).where(Webhook.org_id == firm.org_id)).all() == []


def test_a_create_form_sent_twice_creates_one_key_and_never_shows_it_again(app, db):
    """A reload of the "key created" page (or a double click) resends the form: it must act once."""
    from sqlalchemy import func, select

    from gateway.auth.models import ApiKey
    from tests.factories import make_tenant
    from tests.portal.helpers import portal_client, portal_sign_in

    tenant = make_tenant(db)
    client = portal_client(app)
    csrf = portal_sign_in(client, tenant.admin_email)
    form_page = client.get("/portal/api-keys").get_data(as_text=True)
    form_id = re.search(r'name="form_id" value="([0-9a-f]{32})"', form_page).group(1)
    data = {"csrf_token": csrf, "form_id": form_id, "name": "twice", "scopes": ["requests:read"]}
    first = client.post("/portal/api-keys", data=data)
    assert first.status_code == 201 and "rgw_" in first.get_data(as_text=True)
    again = client.post("/portal/api-keys", data=data)
    assert again.status_code == 303 and again.headers["Location"].endswith("/portal/api-keys?resent=1")
    listed = client.get(again.headers["Location"]).get_data(as_text=True)
    assert 'id="resent-notice"' in listed
    with db.transaction() as session:
        count = session.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.org_id == tenant.org_id,
                                                                              ApiKey.name == "twice"))
    assert count == 1

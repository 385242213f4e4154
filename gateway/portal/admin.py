"""Requester admins' pages: their organization's API keys and webhooks.

The same service functions, schemas, tenant guard and audit entries as
`/v1/orgs/<org>/api-keys` and `/v1/webhooks`.  A new key or signing secret is
put in the body of the one response that creates it and nowhere else: not in
a URL (a redirect would carry it into history and logs), not in the session,
not in the database unsealed; reloading the list never shows it again.
"""

from __future__ import annotations

from flask import g, redirect, request, url_for
from marshmallow import ValidationError

from gateway.auth import api_keys as keys_service
from gateway.auth import org_admin, rights
from gateway.auth.models import SCOPES, ApiKey, Organization
from gateway.auth.tenancy import get_visible, visible_select
from gateway.auth.views import ApiKeyCreateSchema
from gateway.auth.web import audit_context, remember_credential, requires
from gateway.db import utcnow
from gateway.errors import FieldError, Forbidden, NotFound, Unprocessable
from gateway.pagination import keyset_page
from gateway.portal import bp
from gateway.portal.web import once_per_form
from gateway.portal.web import page as _page
from gateway.web import adapters, db_session, settings
from gateway.webhooks import service as webhooks_service
from gateway.webhooks.models import Webhook, WebhookDelivery
from gateway.webhooks.ssrf import WebhookUrlForbidden
from gateway.webhooks.views import WebhookCreateSchema, visible_webhook

SCOPE_LABELS = {
    "requests:write": "Create and submit requests",
    "requests:read": "Read requests and their status",
    "documents:read": "Download documents, including released records",
}
EVENT_TYPE_LABELS = {
    "request.status_changed": "A request's status changes",
    "request.document_added": "Released records are ready to download",
    "request.invoice_issued": "An invoice is issued for a request",
    "request.invoice_paid": "A request's invoice is paid",
    "request.invoice_disputed": "A request's invoice is disputed",
    "request.message_posted": "A message is posted on a request (ids only, never its text)",
    "request.stale_warning": "A request will soon be cancelled for lack of activity",
    "request.due_date_extended": "The records team extends a request's due date",
}
assert set(SCOPE_LABELS) == set(SCOPES), "scope labels out of step with SCOPES"
assert set(EVENT_TYPE_LABELS) == set(webhooks_service.EVENT_TYPES), "event labels out of step with EVENT_TYPES"

# Errors worded for people, one per field whatever marshmallow said (its wording is for API clients).
KEY_FIELD_MESSAGES = {
    "name": "Name: use at most 100 characters.",
    "scopes": "Permissions: choose at least one.",
    "expires_in_days": "Expires after: enter a whole number of days from 1 to 730, or leave it blank.",
}
WEBHOOK_FIELD_MESSAGES = {
    "url": "URL: enter the https address of your endpoint (at most 2000 characters).",
    "events": "Events: choose at least one.",
}
KEYS_PER_PAGE = 50
DELIVERIES_SHOWN = 10
DELETED_WEBHOOKS_SHOWN = 10


def _org() -> Organization:
    """The signed-in admin's own organization, through the tenant guard as the API reads it."""
    principal = g.principal
    if not principal.org_id:
        raise Forbidden("API keys and webhooks belong to a requester organization.")
    rights.ensure_manages_credentials(principal, principal.org_id)  # the API's own rule, whatever the page
    return get_visible(db_session(), principal, Organization, principal.org_id, db=adapters().db,
                       audit_context=audit_context())


def _plain_errors(messages: dict, wording: dict) -> list[FieldError]:
    """One error per refused field, in the form's order and in `wording`'s words."""
    return [FieldError("INVALID_FIELD", name, message) for name, message in wording.items() if name in messages]


# --- API keys --------------------------------------------------------------------------------------------------

def _keys_page(*, status: int = 200, values: dict | None = None, errors=()):
    org = _org()
    query = visible_select(g.principal, ApiKey).where(ApiKey.org_id == org.id)
    cursor = (request.args.get("cursor") or "")[:200] or None
    items, next_cursor = keyset_page(db_session(), query, columns=[ApiKey.created_at, ApiKey.id],
                                     limit=KEYS_PER_PAGE, cursor=cursor)
    return _page("portal/api_keys.html", status, keys=items, next_cursor=next_cursor,
                 values=values or {"name": "", "scopes": [], "expires_in_days": ""}, errors=list(errors),
                 scope_options=[(s, SCOPE_LABELS[s]) for s in SCOPES], scope_labels=SCOPE_LABELS,
                 revoked=request.args.get("revoked") == "1", now=utcnow())


@bp.route("/api-keys", methods=["GET"])
@requires(rights.ORG_ADMIN)
def api_keys():
    """The organization's API keys (never their secrets) and the form to create one."""
    return _keys_page()


@bp.route("/api-keys", methods=["POST"])
@requires(rights.ORG_ADMIN)
@once_per_form(repeat_endpoint="portal.api_keys")
def create_api_key():
    """Create a key (as POST /v1/orgs/<org>/api-keys does) and show it, this once."""
    form = request.form
    values = {"name": (form.get("name") or "").strip(), "scopes": [s for s in form.getlist("scopes") if s],
              "expires_in_days": (form.get("expires_in_days") or "").strip()}
    days = values["expires_in_days"]
    # A form sends text; the API's schema takes a JSON integer (digits become one, anything else stays refused).
    body = {"name": values["name"], "scopes": values["scopes"],
            "expires_in_days": (int(days) if days.isascii() and days.isdigit() else days) if days else None}
    try:
        loaded = ApiKeyCreateSchema().load(body)
    except ValidationError as error:
        return _keys_page(status=422, values=values, errors=_plain_errors(error.messages, KEY_FIELD_MESSAGES))
    try:
        key, plaintext = org_admin.issue_api_key(adapters().db, g.principal, _org().id, scopes=loaded["scopes"],
                                                 name=loaded["name"], expires_in_days=loaded["expires_in_days"],
                                                 audit_ctx=audit_context())
    except keys_service.InvalidScopes:
        return _keys_page(status=422, values=values, errors=_plain_errors({"scopes": []}, KEY_FIELD_MESSAGES))
    remember_credential(plaintext)  # usable at once, even from an address over its failure limit
    return _page("portal/api_key_created.html", 201, key=key, plaintext=plaintext, scope_labels=SCOPE_LABELS)


@bp.route("/api-keys/<key_id>/revoke", methods=["POST"])
@requires(rights.ORG_ADMIN)
def revoke_api_key(key_id):
    """Revoke a key (as DELETE /v1/orgs/<org>/api-keys/<id> does); it stops working at once."""
    org, principal, session = _org(), g.principal, db_session()
    key = get_visible(session, principal, ApiKey, key_id, db=adapters().db, audit_context=audit_context())
    if key.org_id != org.id:  # the guard already says so for admins; keys are addressed under their org
        raise NotFound()
    org_admin.revoke_api_key(adapters().db, principal, key.id, audit_ctx=audit_context())
    return redirect(url_for("portal.api_keys", revoked=1), code=303)


# --- webhooks --------------------------------------------------------------------------------------------------

def _webhooks_page(*, status: int = 200, values: dict | None = None, errors=()):
    org, principal, session = _org(), g.principal, db_session()
    base = visible_select(principal, Webhook).where(Webhook.org_id == org.id)
    active = session.scalars(base.where(Webhook.active.is_(True))
                             .order_by(Webhook.created_at.desc(), Webhook.id.desc())).all()
    deleted = session.scalars(base.where(Webhook.active.is_(False))
                              .order_by(Webhook.deactivated_at.desc(), Webhook.id.desc())
                              .limit(DELETED_WEBHOOKS_SHOWN)).all()
    deliveries = {w.id: session.scalars(
        visible_select(principal, WebhookDelivery).where(WebhookDelivery.webhook_id == w.id)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()).limit(DELIVERIES_SHOWN)).all()
        for w in active}  # at most MAX_WEBHOOKS_PER_ORG small queries
    return _page("portal/webhooks.html", status, webhooks=active, deleted=deleted, deliveries=deliveries,
                 values=values or {"url": "", "events": []}, errors=list(errors),
                 event_options=list(EVENT_TYPE_LABELS.items()), event_labels=EVENT_TYPE_LABELS,
                 limit=webhooks_service.MAX_WEBHOOKS_PER_ORG, deleted_notice=request.args.get("deleted") == "1",
                 allow_http=settings().webhook_allow_private)


@bp.route("/webhooks", methods=["GET"])
@requires(rights.ORG_ADMIN)
def webhooks():
    """The organization's webhooks with their recent deliveries, and the form to add one."""
    return _webhooks_page()


@bp.route("/webhooks", methods=["POST"])
@requires(rights.ORG_ADMIN)
@once_per_form(repeat_endpoint="portal.webhooks")
def create_webhook():
    """Register a webhook (as POST /v1/webhooks does) and show its signing secret, this once."""
    form = request.form
    values = {"url": (form.get("url") or "").strip(), "events": [e for e in form.getlist("events") if e]}
    try:
        loaded = WebhookCreateSchema().load(values)
    except ValidationError as error:
        return _webhooks_page(status=422, values=values,
                              errors=_plain_errors(error.messages, WEBHOOK_FIELD_MESSAGES))
    _org()  # the admin's organization, read through the guard as the other pages do
    try:  # as the API: a URL the SSRF guard refuses is audited `blocked` by the service
        webhook, secret = webhooks_service.register_webhook(adapters().db, principal=g.principal, url=loaded["url"],
                                                            events=loaded["events"], settings=settings(),
                                                            audit_ctx=audit_context())
    except WebhookUrlForbidden as refused:
        return _webhooks_page(status=422, values=values, errors=refused.errors)
    except Unprocessable as refused:  # too many webhooks, unknown events: the service's own words
        return _webhooks_page(status=422, values=values,
                              errors=refused.errors or [FieldError(refused.code, None, refused.detail)])
    return _page("portal/webhook_created.html", 201, webhook=webhook, secret=secret, event_labels=EVENT_TYPE_LABELS)


@bp.route("/webhooks/<webhook_id>/delete", methods=["POST"])
@requires(rights.ORG_ADMIN)
def delete_webhook(webhook_id):
    """Delete a webhook (as DELETE /v1/webhooks/<id> does): nothing more is sent, pending deliveries stop."""
    org, principal = _org(), g.principal
    webhook = visible_webhook(webhook_id)  # a deleted one is gone, as in the API
    if webhook.org_id != org.id:
        raise NotFound()
    webhooks_service.delete_webhook(adapters().db, principal=principal, webhook_id=webhook.id,
                                    audit_ctx=audit_context())
    return redirect(url_for("portal.webhooks", deleted=1), code=303)

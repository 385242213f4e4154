"""`/v1/webhooks`: a requester organization's admins register, list and delete webhooks and read deliveries."""

from __future__ import annotations

import functools

from flask import current_app, make_response, url_for
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from gateway.auth.tenancy import get_visible, visible_select
from gateway.auth.web import audit_context, current_principal, requires
from gateway.errors import NotFound
from gateway.pagination import PageArgsSchema, keyset_page
from gateway.schemas import Timestamp
from gateway.web import IDEMPOTENCY_HEADER, adapters, db_session, run_idempotently, settings
from gateway.webhooks import service
from gateway.webhooks.models import DELIVERY_STATES, Webhook, WebhookDelivery

DESCRIPTION = """Requester organizations' webhooks (requester admins only; not API keys).

Each delivery is a POST of JSON `{"id", "type", "created_at", "data": {"request_id", "status", ...}}` (ids,
statuses and codes only, never PHI) with headers `Gateway-Signature: t=<unix ts>,v1=<hex HMAC-SHA256 of
"<t>.<raw body>" keyed with the webhook's secret>`, `Gateway-Event-Id` and `Gateway-Delivery-Id`. Verify the
signature over the raw bytes with a constant-time comparison and refuse timestamps more than 5 minutes old.
Delivery is at least once: deduplicate on `Gateway-Event-Id`. A 2xx answer is success; any other 4xx except
408 and 429 stops delivery of that event; network errors, timeouts, 3xx (redirects are never followed), 408,
429 and 5xx are retried with exponential backoff (30 s doubling, at most 6 h apart) for up to 3 days."""

blp = Blueprint("webhooks", __name__, url_prefix="/v1/webhooks", description=DESCRIPTION)


class WebhookCreateSchema(Schema):
    url = fields.String(required=True, validate=validate.Length(1, 2000), metadata={
        "description": "An https URL whose host resolves only to public addresses.",
        "example": "https://hooks.example.com/records-gateway"})
    events = fields.List(fields.String(validate=validate.OneOf(service.EVENT_TYPES)), required=True,
                         validate=validate.Length(min=1, max=len(service.EVENT_TYPES)),
                         metadata={"example": ["request.status_changed"]})


class WebhookSchema(Schema):
    id = fields.String()
    org = fields.String(attribute="org_id")
    url = fields.String()
    events = fields.List(fields.String())
    active = fields.Boolean()
    created_at = Timestamp()


class WebhookCreatedSchema(WebhookSchema):
    secret = fields.String(metadata={
        "description": "Signs every delivery (`Gateway-Signature`). Shown in this response only; a replay of "
                       "the same Idempotency-Key answers without it. Lost it? Delete the webhook and create another."})


class WebhookListSchema(Schema):
    items = fields.List(fields.Nested(WebhookSchema))
    next_cursor = fields.String(allow_none=True)


class WebhookDeliverySchema(Schema):
    id = fields.String()
    event_id = fields.String()
    event_type = fields.String()
    state = fields.String(metadata={"description": " | ".join(DELIVERY_STATES)})
    attempts = fields.Integer()
    last_status_code = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True, metadata={"description": "A short reason code, e.g. http_503, "
                                                                         "timeout, connection_refused"})
    next_attempt_at = Timestamp(allow_none=True)
    last_attempt_at = Timestamp(allow_none=True)
    created_at = Timestamp()
    delivered_at = Timestamp(allow_none=True)


class WebhookDeliveryListSchema(Schema):
    items = fields.List(fields.Nested(WebhookDeliverySchema))
    next_cursor = fields.String(allow_none=True)


class WebhookDeliveryArgsSchema(PageArgsSchema):
    state = fields.String(load_default=None, validate=validate.OneOf(DELIVERY_STATES))


def _secret_shown_once(view):
    """`idempotent`, except that the response kept for replay leaves out the secret.

    The secret is then never written anywhere unsealed (the idempotency table
    would otherwise hold it in clear for 24 hours); a replay answers the
    webhook without `secret`.  Place it where `@idempotent` goes.
    """
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        shown: dict = {}

        def produce():
            response = make_response(view(*args, **kwargs))
            if response.status_code == 201 and response.is_json:
                body = response.get_json()
                shown["secret"] = body.pop("secret", None)
                response.set_data(current_app.json.dumps(body))
            return response

        response = make_response(run_idempotently(produce))
        if shown.get("secret"):
            body = response.get_json()
            body["secret"] = shown["secret"]
            response.set_data(current_app.json.dumps(body))
        return response

    return wrapper


def visible_webhook(webhook_id: str) -> Webhook:
    """An active webhook of the caller's organization; anything else is the same 404."""
    webhook = get_visible(db_session(), current_principal(), Webhook, webhook_id, db=adapters().db,
                          audit_context=audit_context())
    if not webhook.active:  # deleted webhooks are gone from the API; their rows stay for the record
        raise NotFound()
    return webhook


@blp.route("", methods=["POST"])
@requires("requester_admin")
@_secret_shown_once
@blp.doc(parameters=[IDEMPOTENCY_HEADER])
@blp.arguments(WebhookCreateSchema)
@blp.response(201, WebhookCreatedSchema, headers={"Location": {"$ref": "#/components/headers/Location"}})
@blp.alt_response(422, description="WEBHOOK_URL_FORBIDDEN: not https, credentials in the URL, or the host "
                                   "resolves to a loopback, private, link-local or metadata address")
def create_webhook(body):
    """Register a webhook for your organization; the signing secret is in this response only."""
    webhook, secret = service.register_webhook(adapters().db, principal=current_principal(), url=body["url"],
                                               events=body["events"], settings=settings(), audit_ctx=audit_context())
    webhook.secret = secret
    return webhook, 201, {"Location": url_for("webhooks.get_webhook", webhook_id=webhook.id)}


@blp.route("", methods=["GET"])
@requires("requester_admin")
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, WebhookListSchema)
def list_webhooks(page):
    """Your organization's webhooks (never their secrets), newest first."""
    query = visible_select(current_principal(), Webhook).where(Webhook.active.is_(True))
    items, next_cursor = keyset_page(db_session(), query, columns=[Webhook.created_at, Webhook.id], **page)
    return {"items": items, "next_cursor": next_cursor}


@blp.route("/<webhook_id>", methods=["GET"])
@requires("requester_admin")
@blp.response(200, WebhookSchema)
def get_webhook(webhook_id):
    """One webhook (without its secret)."""
    return visible_webhook(webhook_id)


@blp.route("/<webhook_id>", methods=["DELETE"])
@requires("requester_admin")
@blp.response(204)
def delete_webhook(webhook_id):
    """Delete a webhook: nothing more is sent to it, and its pending deliveries are abandoned."""
    webhook = visible_webhook(webhook_id)
    service.delete_webhook(adapters().db, principal=current_principal(), webhook_id=webhook.id,
                           audit_ctx=audit_context())


@blp.route("/<webhook_id>/deliveries", methods=["GET"])
@requires("requester_admin")
@blp.arguments(WebhookDeliveryArgsSchema, location="query")
@blp.response(200, WebhookDeliveryListSchema)
def list_deliveries(args, webhook_id):
    """The webhook's delivery log, newest first: state, attempts and the last status or error of each."""
    webhook = visible_webhook(webhook_id)
    state = args.pop("state")
    query = visible_select(current_principal(), WebhookDelivery).where(WebhookDelivery.webhook_id == webhook.id)
    if state:
        query = query.where(WebhookDelivery.state == state)
    items, next_cursor = keyset_page(db_session(), query,
                                     columns=[WebhookDelivery.created_at, WebhookDelivery.id], **args)
    return {"items": items, "next_cursor": next_cursor}

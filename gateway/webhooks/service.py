"""Webhooks: registration, events turned into deliveries, claiming due deliveries, and sending one attempt.

The life of an event: the domain that changes a request calls `emit` in the
same transaction as the change, which writes one pending delivery per
subscribed webhook (or none, and nothing is lost if that transaction rolls
back).  A relay calls `claim_due` and enqueues `jobs.deliver_job(id)` for each
id after committing the claim; the job calls `deliver`, which makes one
attempt and either settles the delivery or schedules the next attempt.
Delivery is at least once: receivers deduplicate on the event id.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from gateway.auth.principal import Principal
from gateway.auth.rights import ensure_manages_credentials
from gateway.crypto import seal, unseal
from gateway.db import Database, grouped, lease_due, new_id, utcnow
from gateway.errors import FieldError, Forbidden, Unprocessable
from gateway.settings import Settings
from gateway.webhooks import access  # noqa: F401  (registers the tenant rules)
from gateway.webhooks.models import Webhook, WebhookDelivery
from gateway.webhooks.sender import RETRY, Outcome, Sender, Transport
from gateway.webhooks.ssrf import check_target

log = logging.getLogger("gateway.webhooks")

# A revocation shows as a status change to on_hold with reasons ["AUTH_REVOKED"]; released records as
# document_added, sent when the request is fulfilled.
EVENT_TYPES = ("request.status_changed", "request.document_added", "request.message_posted", "request.stale_warning",
               "request.due_date_extended",
               # Invoices and payment (API.md v1.1): the invoice's id, status and amount only.
               "request.invoice_issued", "request.invoice_paid", "request.invoice_disputed")
# What an event's `data` may hold: ids, statuses, codes and dates.  Anything else is refused, so PHI cannot
# slip in (a message's text, a staff member's written reason, never; their ids and dates only).
DATA_KEYS = frozenset({"request_id", "status", "previous_status", "reasons", "document_id", "kind", "occurred_at",
                       "message_id", "closes_on", "due_on", "previous_due_on",
                       "invoice_id", "invoice_status", "amount", "currency"})
# Every string in `data` is an id, a status, a code or a timestamp: no spaces, no free text.
_TOKEN = re.compile(r"^[A-Za-z0-9_.:+-]{1,64}$")
SEAL_PURPOSE = "webhook"
MAX_WEBHOOKS_PER_ORG = 10
RETRY_WINDOW = timedelta(days=3)
FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY_DELAY = timedelta(hours=6)
JITTER = 0.2
_random = secrets.SystemRandom()

HttpPost = Transport  # (url, *, body: bytes, headers: dict, timeout: float) -> status code


def create_webhook(session: Session, *, principal: Principal, url: str, events: list[str],
                   settings: Settings) -> tuple[Webhook, str]:
    """Register a webhook for the principal's organization; returns it and its secret (shown once, kept sealed)."""
    if not principal.org_id:
        raise Forbidden("Webhooks belong to a requester organization.")
    ensure_manages_credentials(principal, principal.org_id)  # its admins only: never an operator or an API key
    unknown = [e for e in events if e not in EVENT_TYPES]
    if not events or unknown:
        raise Unprocessable("Subscribe to at least one known event type.", code="VALIDATION_FAILED",
                            errors=[FieldError("INVALID_FIELD", "events", f"one or more of {', '.join(EVENT_TYPES)}")])
    count = session.scalar(select(func.count()).select_from(Webhook).where(
        Webhook.org_id == principal.org_id, Webhook.active.is_(True)))
    if count >= MAX_WEBHOOKS_PER_ORG:
        raise Unprocessable(f"An organization may have at most {MAX_WEBHOOKS_PER_ORG} webhooks; delete one first.",
                            code="WEBHOOK_LIMIT_REACHED")
    check_target(url, allow_private=settings.webhook_allow_private)
    secret = secrets.token_urlsafe(32)
    webhook = Webhook(id=new_id(), org_id=principal.org_id, url=url,
                      events=[e for e in EVENT_TYPES if e in events],
                      secret_sealed=seal(settings.secret_key, secret, purpose=SEAL_PURPOSE),
                      active=True, created_at=utcnow(), created_by=principal.audit_actor)
    session.add(webhook)
    session.flush()
    return webhook, secret


def register_webhook(db: Database, *, principal: Principal, url: str, events: list[str], settings: Settings,
                     audit_ctx: dict) -> tuple[Webhook, str]:
    """`create_webhook` in a transaction of its own with its audit entry (the API and the portal call this).

    A URL the SSRF guard refuses is audited `blocked` (an attempt to aim the gateway at an internal address is
    worth an auditor's eye; the refusal stands should the audit be unavailable) and raised."""
    from gateway.audit.service import AuditUnavailable, record, record_now
    from gateway.webhooks.ssrf import WebhookUrlForbidden

    try:
        with db.transaction() as session:
            webhook, secret = create_webhook(session, principal=principal, url=url, events=events, settings=settings)
            record(session, actor=principal.audit_actor, org_id=webhook.org_id, action="webhook.create",
                   object_type="webhook", object_id=webhook.id, **audit_ctx)
    except WebhookUrlForbidden:
        try:
            record_now(db, actor=principal.audit_actor, org_id=principal.org_id, action="webhook.create",
                       result="blocked", object_type="webhook", **audit_ctx)
        except AuditUnavailable:
            pass
        raise
    return webhook, secret


def delete_webhook(db: Database, *, principal: Principal, webhook_id: str, audit_ctx: dict) -> None:
    """Stop a webhook (the caller found it through the tenant guard) and audit it, in one transaction."""
    from gateway.audit.service import record

    with db.write_transaction() as session:
        webhook = session.get(Webhook, webhook_id)
        deactivate_webhook(session, webhook)
        record(session, actor=principal.audit_actor, org_id=webhook.org_id, action="webhook.delete",
               object_type="webhook", object_id=webhook.id, **audit_ctx)


def deactivate_webhook(session: Session, webhook: Webhook, *, now: datetime | None = None) -> int:
    """Stop a webhook: no new deliveries, and its pending ones are abandoned; returns how many were."""
    now = now or utcnow()
    webhook.active, webhook.deactivated_at = False, now
    result = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook.id, WebhookDelivery.state == "pending")
        .values(state="abandoned", last_error="webhook_disabled", next_attempt_at=None)
        .execution_options(synchronize_session=False))
    session.flush()
    return result.rowcount


def timestamp(value: datetime) -> str:
    """A UTC timestamp as ISO-8601 with a Z, to the millisecond."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _clean_data(data: Mapping) -> dict:
    if not isinstance(data, Mapping):
        raise ValueError("webhook event data must be a mapping")
    unknown = sorted(str(k) for k in data if k not in DATA_KEYS)
    if unknown:
        raise ValueError(f"webhook event data may hold only ids, statuses and codes; refused keys: {unknown}")
    clean: dict = {}
    for key, raw in data.items():
        value = timestamp(raw) if key == "occurred_at" and isinstance(raw, datetime) else raw
        if key == "reasons":
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) and _TOKEN.match(v) for v in value):
                raise ValueError("webhook event reasons must be a list of codes")
            value = list(value)
        elif value is not None and not (isinstance(value, str) and _TOKEN.match(value)):
            raise ValueError(f"webhook event data {key!r} must be an id, a status or a code")
        clean[key] = value
    return clean


def active_webhooks(session: Session, org_id: str) -> list[Webhook]:
    """The organization's active webhooks (what `emit` chooses the subscribers of an event from)."""
    return list(session.scalars(select(Webhook).where(Webhook.org_id == org_id, Webhook.active.is_(True))))


def emit(session: Session, *, org_id: str, event_type: str, data: dict,
         event_id: str | None = None, webhooks: list[Webhook] | None = None,
         already: set[str] | None = None) -> list[WebhookDelivery]:
    """Queue one event for every active webhook of `org_id` subscribed to it, in the caller's transaction.

    `data` may hold only DATA_KEYS, as ids, statuses and codes (ValueError
    otherwise).  Passing the same `event_id` again queues nothing twice.  `webhooks` (the organization's
    `active_webhooks`, read once by a caller fanning out many events) saves reading them per event, and
    `already` (the webhook ids that have this event, from `delivered_events`) the look for earlier deliveries.
    The rows go in with the caller's next flush (its commit at the latest).
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    clean = _clean_data(data)
    now = utcnow()
    event_id = event_id or new_id()
    payload = {"id": event_id, "type": event_type, "created_at": timestamp(now), "data": clean}
    if webhooks is None:
        webhooks = active_webhooks(session, org_id)
    webhooks = [w for w in webhooks if event_type in (w.events or [])]
    if not webhooks:
        return []
    if already is None:
        already = delivered_events(session, [event_id]).get(event_id, set())
    deliveries = [WebhookDelivery(id=new_id(), webhook_id=w.id, event_id=event_id, event_type=event_type,
                                  payload=payload, state="pending", attempts=0, next_attempt_at=now, created_at=now)
                  for w in webhooks if w.id not in already]
    session.add_all(deliveries)
    return deliveries


def delivered_events(session: Session, event_ids: list[str]) -> dict[str, set[str]]:
    """{event id: ids of the webhooks that have it queued or sent already}, for the events that have any."""
    return grouped(session, WebhookDelivery.event_id, WebhookDelivery.webhook_id, event_ids)


def claim_due(session: Session, *, now: datetime, limit: int, lease: timedelta) -> list[str]:
    """Ids of pending deliveries due by `now`, pushed to `now + lease` so no other relay takes them meanwhile.

    Commit the session before enqueueing the ids.  On PostgreSQL rows another
    relay holds are skipped (SKIP LOCKED); on SQLite the write lock serialises
    relays.  Either way the UPDATE re-checks "still due", so one id is handed
    out once per lease.
    """
    return lease_due(session, WebhookDelivery.__table__, "state", now=now, limit=limit, lease=lease)


def canonical_body(payload: dict) -> bytes:
    """The exact bytes sent (and signed) for a payload."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def retry_delay(attempts: int) -> timedelta:
    """Wait after the `attempts`-th failed attempt: 30 s doubling, ±20% jitter, at most 6 h."""
    base = FIRST_RETRY.total_seconds() * 2 ** min(max(attempts - 1, 0), 20)
    seconds = min(base, MAX_RETRY_DELAY.total_seconds()) * _random.uniform(1 - JITTER, 1 + JITTER)
    return timedelta(seconds=min(seconds, MAX_RETRY_DELAY.total_seconds()))


def deliver(db: Database, delivery_id: str, *, settings: Settings, http_post: HttpPost | None = None,
            now: datetime | None = None) -> str:
    """Make one attempt at a delivery and record it; returns the delivery's state afterwards.

    No transaction is held open across the HTTP call.  A delivery that is no
    longer pending is left alone (a job run twice does nothing the second time).
    The attempt itself, and whether a failure is retried, is the one sender's
    (gateway.webhooks.sender); the backoff and the three-day window are here.
    """
    now = now or utcnow()
    sender = Sender.from_settings(settings, transport=http_post)
    with db.transaction() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None:
            return "missing"
        if delivery.state != "pending":
            return delivery.state
        webhook = session.get(Webhook, delivery.webhook_id)
        if webhook is None or not webhook.active:
            delivery.state, delivery.last_error, delivery.next_attempt_at = "abandoned", "webhook_disabled", None
            return delivery.state
        url, sealed, payload = webhook.url, webhook.secret_sealed, delivery.payload
        event_id, webhook_id = delivery.event_id, webhook.id

    try:
        secret = unseal(settings.secret_key, sealed, purpose=SEAL_PURPOSE)
    except ValueError:  # GATEWAY_SECRET_KEY changed: retry once it is restored
        outcome = Outcome(RETRY, None, "secret_unreadable")
    else:
        outcome = sender.send(url, secret=secret, body=canonical_body(payload), timestamp=int(now.timestamp()),
                              headers={"Gateway-Event-Id": event_id, "Gateway-Delivery-Id": delivery_id})

    with db.transaction() as session:
        delivery = session.get(WebhookDelivery, delivery_id, with_for_update=True)
        if delivery is None or delivery.state == "delivered":
            return "delivered" if delivery else "missing"
        _record_attempt(delivery, outcome, now=now)
        state = delivery.state
    log.info("webhook delivery attempt", extra={
        "delivery_id": delivery_id, "webhook_id": webhook_id, "state": state, "status_code": outcome.status,
        "error": outcome.reason, "attempt": delivery.attempts})
    return state


def _record_attempt(delivery: WebhookDelivery, outcome: Outcome, *, now: datetime) -> None:
    delivery.attempts = (delivery.attempts or 0) + 1
    delivery.last_attempt_at, delivery.last_status_code = now, outcome.status
    if outcome.delivered:
        delivery.state, delivery.last_error = "delivered", None
        delivery.delivered_at, delivery.next_attempt_at = now, None
        return
    delivery.last_error = (outcome.reason or "failed")[:200]
    if not outcome.retryable:
        delivery.state, delivery.next_attempt_at = "failed", None
        return
    next_at = now + retry_delay(delivery.attempts)
    if delivery.state != "pending" or next_at > delivery.created_at + RETRY_WINDOW:
        # The webhook was deleted meanwhile, or the three days are up.
        delivery.state, delivery.next_attempt_at = "abandoned", None
    else:
        delivery.next_attempt_at = next_at

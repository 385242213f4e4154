"""Who may see which webhooks and deliveries, registered with the one tenant guard.

A requester organization's admins (portal users, not API keys) see its
webhooks and their delivery logs; everyone else none, operators included (a
webhook is the organization's channel for its requests' events: its admins'
business, API.md v1.1 "Abuse and least privilege").
"""

from __future__ import annotations

from sqlalchemy import false, select

from gateway.auth.principal import Principal
from gateway.auth.tenancy import tenant_rule, visibility
from gateway.webhooks.models import Webhook, WebhookDelivery


@tenant_rule(Webhook)
def _webhooks(principal: Principal):
    if principal.kind == "user" and principal.org_id and principal.has_role("requester_admin"):
        return Webhook.org_id == principal.org_id
    return false()


@tenant_rule(WebhookDelivery)
def _deliveries(principal: Principal):
    return WebhookDelivery.webhook_id.in_(select(Webhook.id).where(visibility(principal, Webhook)))

"""The RQ job sending one webhook delivery attempt: a plain function of an id, on the worker's runtime."""

from __future__ import annotations

from gateway.webhooks.service import deliver


def deliver_job(delivery_id: str) -> str:
    """Make one attempt at delivery `delivery_id`; returns its state afterwards (safe to run twice)."""
    from gateway.runtime import runtime

    rt = runtime()
    return deliver(rt.db, delivery_id, settings=rt.settings)

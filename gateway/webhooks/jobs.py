"""The RQ job sending one webhook delivery attempt: a plain function taking an id (JSON-serializable)."""

from __future__ import annotations

from gateway.db import Database
from gateway.settings import Settings
from gateway.webhooks.service import deliver


def deliver_job(delivery_id: str) -> str:
    """Make one attempt at delivery `delivery_id`; returns its state afterwards (safe to run twice)."""
    settings = Settings.from_env()
    db = Database.from_settings(settings)
    try:
        return deliver(db, delivery_id, settings=settings)
    finally:
        db.dispose()

"""The RQ job sending one notification e-mail: a plain function of an id, on the worker's runtime."""

from __future__ import annotations

from gateway.mail.service import send


def send_job(notification_id: str) -> str:
    """Make one attempt at e-mail `notification_id`; returns its state afterwards (safe to run twice)."""
    from gateway.runtime import runtime

    rt = runtime()
    return send(rt.db, notification_id, mailer=rt.mailer, settings=rt.settings, now=rt.clock.now())

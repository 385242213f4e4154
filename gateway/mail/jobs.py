"""The RQ jobs sending notification e-mails: plain functions of ids, on the worker's runtime."""

from __future__ import annotations

from gateway.mail.service import send, send_many


def send_job(notification_id: str) -> str:
    """Make one attempt at e-mail `notification_id`; returns its state afterwards (safe to run twice)."""
    from gateway.runtime import runtime

    rt = runtime()
    return send(rt.db, notification_id, mailer=rt.mailer, settings=rt.settings, now=rt.clock.now())


def send_all_job(notification_ids: list[str]) -> dict[str, int]:
    """One attempt at each of a claimed batch of e-mails (each settled on its own, as `send_job` would); how
    many ended in each state.  Housekeeping claims e-mails by the hundred: one job and two transactions for
    the lot cost the worker and the database far less than a job and two transactions each."""
    from gateway.runtime import runtime

    rt = runtime()
    states: dict[str, int] = {}
    for state in send_many(rt.db, notification_ids, mailer=rt.mailer, settings=rt.settings,
                           now=rt.clock.now()).values():
        states[state] = states.get(state, 0) + 1
    return states

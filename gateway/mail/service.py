"""Notification e-mails: rows written with an event's fan-out, claimed by housekeeping, sent by a job.

The life of one e-mail mirrors a webhook delivery.  When the relay fans out
an outbox event (`gateway.routing.relay.fan_out`) it calls `queue_for_event`
in the same transaction: one `MailNotification` per portal user of the
requesting organization who wants e-mail, unique on (event, user), so a
re-published event queues nothing twice.  Housekeeping calls `claim_due` and
enqueues `gateway.mail.jobs.send_all_job(ids)` for the claimed batch on the
maintenance queue; the job calls `send` for each, which makes one attempt
outside any transaction and settles the row or schedules the next attempt
(a minute, doubling, at most six hours apart, for three days).  Nothing here runs in a web request.

Who hears about what: requesters and requester admins (people, never API
keys) of the request's organization; not the person who caused the event
(they know), not about `routed` (it follows `submitted` within seconds), and
never about internal notes (those make no event at all).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.auth.models import User
from gateway.auth.principal import REQUESTER_ROLES
from gateway.db import Database, grouped, lease_due, new_id, utcnow
from gateway.mail.compose import compose
from gateway.mail.mailer import ConnectionLost, Mailer, MailRefused, MailSession, MailUnavailable
from gateway.mail.models import MailNotification

log = logging.getLogger("gateway.mail")

MAIL_EVENTS = frozenset({"request.status_changed", "request.message_posted", "request.stale_warning",
                         "request.due_date_extended"})
# Statuses nobody needs an e-mail for: `routed` follows `submitted` by seconds, without anyone acting.
QUIET_STATUSES = frozenset({"routed"})
# What a row's context may carry besides the reference and facility name: statuses and ISO dates.
CONTEXT_KEYS = ("status", "previous_status", "closes_on", "due_on")
FIRST_RETRY = timedelta(minutes=1)
MAX_RETRY_DELAY = timedelta(hours=6)
RETRY_WINDOW = timedelta(days=3)
JITTER = 0.2
_random = secrets.SystemRandom()


@dataclass(frozen=True)
class RequestLabel:
    """How an e-mail names a request: the requester's own reference and the facility's name."""

    reference: str
    facility: str


def subscribers(session: Session, org_id: str) -> list[User]:
    """Active portal users of the organization who want e-mail (whoever caused an event is left out later)."""
    users = session.scalars(select(User).where(User.org_id == org_id, User.active.is_(True),
                                               User.email_notifications.is_(True)).order_by(User.id))
    return [u for u in users if REQUESTER_ROLES & set(u.roles or ())]


def recipients(session: Session, org_id: str, *, actor: str | None,
               users: list[User] | None = None) -> list[User]:
    """Active portal users of the organization who want e-mail, except the one who caused the event.

    `users` (the organization's `subscribers`, read once by a caller fanning out many events) saves the read."""
    users = subscribers(session, org_id) if users is None else users
    return [u for u in users if f"user:{u.id}" != actor]


def wants_mail(event_type: str, data: dict) -> bool:
    """Whether this event is one the portal's users are e-mailed about."""
    if event_type not in MAIL_EVENTS:
        return False
    return not (event_type == "request.status_changed" and data.get("status") in QUIET_STATUSES)


def queue_for_event(session: Session, *, event_id: str, event_type: str, org_id: str, request_id: str,
                    data: dict, label: RequestLabel, actor: str | None = None,
                    users: list[User] | None = None, already: set[str] | None = None) -> list[MailNotification]:
    """One pending e-mail per recipient of this event, in the caller's (the fan-out's) transaction.

    `already` (the users e-mailed about this event before, from `mailed_events`) saves that look; the rows
    go in with the caller's next flush (its commit at the latest)."""
    if not wants_mail(event_type, data):
        return []
    users = recipients(session, org_id, actor=actor, users=users)
    if not users:
        return []
    if already is None:
        already = mailed_events(session, [event_id]).get(event_id, set())
    context = {"reference": label.reference, "facility": label.facility,
               **{key: str(data[key]) for key in CONTEXT_KEYS if data.get(key) is not None}}
    now = utcnow()
    rows = [MailNotification(id=new_id(), event_id=event_id, event_type=event_type, user_id=u.id,
                             request_id=request_id, context=context, state="pending", attempts=0,
                             next_attempt_at=now, created_at=now)
            for u in users if u.id not in already]
    session.add_all(rows)
    return rows


def mailed_events(session: Session, event_ids: list[str]) -> dict[str, set[str]]:
    """{event id: ids of the users it has been queued for already}, for the events that have any."""
    return grouped(session, MailNotification.event_id, MailNotification.user_id, event_ids)


def claim_due(session: Session, *, now: datetime, limit: int, lease: timedelta) -> list[str]:
    """Ids of pending e-mails due by `now`, pushed to `now + lease` so no other relay takes them meanwhile.

    Commit before enqueueing the ids (the same claim as webhook deliveries: SKIP LOCKED on PostgreSQL,
    the write lock on SQLite, and the UPDATE re-checks "still due").
    """
    return lease_due(session, MailNotification.__table__, "state", now=now, limit=limit, lease=lease)


def retry_delay(attempts: int) -> timedelta:
    """Wait after the `attempts`-th failed attempt: a minute doubling, ±20% jitter, at most six hours."""
    base = FIRST_RETRY.total_seconds() * 2 ** min(max(attempts - 1, 0), 20)
    seconds = min(base, MAX_RETRY_DELAY.total_seconds()) * _random.uniform(1 - JITTER, 1 + JITTER)
    return timedelta(seconds=min(seconds, MAX_RETRY_DELAY.total_seconds()))


def send(db: Database, notification_id: str, *, mailer: Mailer, settings, now: datetime) -> str:
    """Make one attempt at an e-mail and record it; returns the row's state afterwards (safe to run twice).

    The user is read at send time: someone who opted out or was deactivated since the event gets nothing.
    No transaction is held open while the mail server is talked to.
    """
    return send_many(db, [notification_id], mailer=mailer, settings=settings, now=now)[notification_id]


def send_many(db: Database, notification_ids: list[str], *, mailer: Mailer, settings,
              now: datetime) -> dict[str, str]:
    """`send` for a batch: one attempt at each e-mail, each settled on its own; {id: state afterwards}.

    The rows and their users are read in one transaction and the attempts recorded in another, so a batch
    costs the database two transactions, not two per e-mail; no transaction is open while mail is sent.
    The batch goes over one connection to the mail server; when it cannot be reached (or is lost), the
    e-mails not yet tried wait for their next attempt like the one that found out, and are not composed.
    """
    states: dict[str, str] = {}
    messages = {}  # {id: what compose takes}: composed only when its turn to be sent comes
    with db.transaction() as session:
        rows = {row.id: row for row in session.scalars(
            select(MailNotification).where(MailNotification.id.in_(notification_ids)))}
        users = {user.id: user for user in session.scalars(
            select(User).where(User.id.in_({row.user_id for row in rows.values()})))} if rows else {}
        for notification_id in notification_ids:
            row = rows.get(notification_id)
            if row is None:
                states[notification_id] = "missing"
            elif row.state != "pending":
                states[notification_id] = row.state
            elif not _wants(users.get(row.user_id)):
                row.state, row.next_attempt_at, row.last_error = "skipped", None, "opted_out_or_inactive"
                states[notification_id] = row.state
            else:
                user = users[row.user_id]
                messages[notification_id] = {
                    "notification_id": row.id, "event_type": row.event_type, "context": row.context,
                    "request_id": row.request_id, "to": user.email, "sender": settings.mail_from,
                    "portal_url": settings.portal_url, "now": now}
    if not messages:
        return states
    outcomes: dict[str, tuple[str | None, bool]] = {}
    try:
        try:
            with mailer.session() as connection:
                for notification_id, parts in messages.items():
                    try:
                        outcomes[notification_id] = _attempt(connection, compose(**parts))
                    except ConnectionLost as lost:
                        outcomes[notification_id] = (str(lost) or "unavailable", True)
                        raise
        except MailUnavailable as unreachable:  # no connection, no login, or the connection lost
            reason = str(unreachable) or "unavailable"
            outcomes.update({notification_id: (reason, True) for notification_id in messages
                             if notification_id not in outcomes})
    finally:  # what was sent is recorded even if something unforeseen stops the batch (so it is not sent twice)
        if outcomes:
            _record_outcomes(db, outcomes, states, now=now)
    return states


def _record_outcomes(db: Database, outcomes: dict[str, tuple[str | None, bool]], states: dict[str, str], *,
                     now: datetime) -> None:
    with db.transaction() as session:
        rows = {row.id: row for row in session.scalars(
            select(MailNotification).where(MailNotification.id.in_(list(outcomes)))
            .order_by(MailNotification.id).with_for_update())}
        logged = []
        for notification_id, (error, retryable) in outcomes.items():
            row = rows.get(notification_id)
            if row is None or row.state != "pending":  # settled meanwhile (a second run of the same job)
                states[notification_id] = row.state if row else "missing"
                continue
            _record_attempt(row, error, retryable, now=now)
            states[notification_id] = row.state
            logged.append((notification_id, row.event_type, row.state, error, row.attempts))
    for notification_id, event_type, state, error, attempts in logged:
        # Ids and codes only: never the address, the subject or the server's reply.
        log.info("mail attempt", extra={"notification_id": notification_id, "event_type": event_type,
                                        "state": state, "error": error, "attempt": attempts})


def _wants(user: User | None) -> bool:
    return user is not None and user.active and user.email_notifications


def _attempt(connection: MailSession, message) -> tuple[str | None, bool]:
    """One try at handing the message to the mail server: (error or None, whether to try again later).

    ConnectionLost propagates: the batch stops there."""
    try:
        connection.send(message)
    except ConnectionLost:
        raise
    except MailUnavailable as unavailable:
        return str(unavailable) or "unavailable", True
    except MailRefused as refused:
        return str(refused) or "refused", False
    return None, False


def _record_attempt(row: MailNotification, error: str | None, retryable: bool, *, now: datetime) -> None:
    row.attempts = (row.attempts or 0) + 1
    row.last_attempt_at = now
    if error is None:
        row.state, row.sent_at, row.next_attempt_at, row.last_error = "sent", now, None, None
        return
    row.last_error = error[:120]
    next_at = now + retry_delay(row.attempts)
    if not retryable:
        row.state, row.next_attempt_at = "failed", None
    elif next_at > row.created_at + RETRY_WINDOW:
        row.state, row.next_attempt_at = "abandoned", None
    else:
        row.next_attempt_at = next_at

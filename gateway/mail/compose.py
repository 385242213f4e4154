"""The text of each notification e-mail: the request's reference, its facility, what happened, a portal link.

Nothing else goes in: no patient name, date of birth or MRN, no message text,
no reasons written by staff (the portal shows those after sign-in).  The
reference and facility name are the requester's own label and the hospital's
name.  The message is plain text, marked as automatic (RFC 3834) so
out-of-office replies stay away.
"""

from __future__ import annotations

from datetime import date, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

STATUS_WORDS = {
    "draft": ("a draft", "It has not been submitted."),
    "submitted": ("submitted", "It was checked and accepted, and is on its way to the records team."),
    "routed": ("in the records team's queue", ""),
    "in_progress": ("in progress", "A records specialist is working on it."),
    "on_hold": ("on hold", "The records team paused it. The portal says why."),
    "awaiting_payment": ("awaiting payment", "The records are ready once the invoice is paid. The portal "
                                             "shows the invoice and how to pay."),
    "fulfilled": ("fulfilled", "The records were released. Download them from the portal."),
    "returned": ("returned to you", "The records team sent it back: see the reasons in the portal, fix the "
                                    "request and submit it again."),
    "denied": ("denied", "The records team cannot release records for this request. The portal says why."),
    "cancelled": ("cancelled", "Nothing more will happen."),
}
PRIVACY = ("For the patient's privacy this e-mail never carries patient details or message text. Sign in to the "
           "portal to read them.")


def long_date(value: str | date | None) -> str:
    """An ISO date as people write it (January 30, 2027)."""
    if not value:
        return ""
    day = date.fromisoformat(value) if isinstance(value, str) else value
    return f"{day:%B} {day.day}, {day.year}"


def subject_and_lines(event_type: str, context: dict) -> tuple[str, list[str]]:
    """The subject and the opening paragraphs of one notification."""
    reference, facility = context.get("reference") or "", context.get("facility") or "the records team"
    if event_type == "request.status_changed":
        words, hint = STATUS_WORDS.get(context.get("status"), (context.get("status") or "changed", ""))
        return (f"Request {reference} is {words}",
                [f"Request {reference} to {facility} is now {words}.", *([hint] if hint else [])])
    if event_type == "request.message_posted":
        return (f"Request {reference}: a new message",
                [f"There is a new message on request {reference} to {facility}."])
    if event_type == "request.stale_warning":
        closes = long_date(context.get("closes_on"))
        status = "draft" if context.get("status") == "draft" else "returned request"
        action = "edit or submit it" if status == "draft" else "correct and resubmit it"
        return (f"Request {reference} will be cancelled on {closes}",
                [f"Your {status} {reference} to {facility} has had no activity for a while. It will be "
                 f"cancelled automatically on {closes} unless you {action} before then."])
    if event_type == "request.due_date_extended":
        due = long_date(context.get("due_on"))
        return (f"Request {reference}: due date extended to {due}",
                [f"The records team extended the due date of request {reference} to {facility} once, by "
                 f"30 days, to {due}. The portal shows their written reason."])
    raise ValueError(f"no e-mail for {event_type!r}")


def compose(*, notification_id: str, event_type: str, context: dict, request_id: str, to: str,
            sender: str, portal_url: str, now: datetime) -> EmailMessage:
    """The finished message for one notification row."""
    subject, opening = subject_and_lines(event_type, context)
    base = portal_url.rstrip("/")
    body = "\n\n".join([
        "Hello,", *opening,
        f"Open the request in the portal:\n{base}/portal/requests/{request_id}",
        PRIVACY,
        "You receive these e-mails as a portal user of your organization. To stop them, turn them off on "
        f"your account page:\n{base}/portal/account",
    ])
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(now)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "records-gateway"
    # One id per notification: a mail system that sees a retry twice can tell it is the same message.
    message["Message-ID"] = f"<{notification_id}@{domain}>"
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    # Plain 7-bit text when it can be (links stay whole in any mail reader); quoted-printable otherwise.
    message.set_content(body + "\n", cte="7bit" if body.isascii() else "quoted-printable")
    return message

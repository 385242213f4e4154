"""What every portal template can use: the session's CSRF token, labels in plain language, dates."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from flask import Flask, g

from gateway.clock import local
from gateway.web import clock

STATUS_LABELS = {
    "draft": ("Draft", "Not yet submitted. Add documents, fix any problems, then submit."),
    "submitted": ("Submitted", "Checked and accepted; being handed to the records team."),
    "routed": ("Routed", "In the records team's queue."),
    "in_progress": ("In progress", "A records specialist is working on it."),
    "on_hold": ("On hold", "Paused by the records team."),
    "awaiting_payment": ("Awaiting payment", "The records are ready: they are released once the invoice is paid."),
    "fulfilled": ("Fulfilled", "Records released. Download them below."),
    "returned": ("Returned", "Sent back to you: see the reasons, fix the request and submit it again."),
    "denied": ("Denied", "The records team cannot release records for this request."),
    "cancelled": ("Cancelled", "Cancelled; nothing more will happen."),
}
REASON_LABELS = {
    "UNREADABLE": "A document could not be read.",
    "INCOMPLETE": "The request or its documents are incomplete.",
    "PATIENT_NOT_FOUND": "No patient matching these details was found.",
    "NO_RECORDS_FOUND": "No records were found for the dates and types asked for.",
    "NEEDS_PHYSICIAN_APPROVAL": "A physician must approve this release first.",
    "AUTHORIZATION_INVALID": "The authorization is not valid for this release.",
    "OTHER": "Another reason (see the note).",
    "STALE_DRAFT": "Closed automatically: the draft was not changed for too long.",
    "RETURN_UNANSWERED": "Closed automatically: the returned request was not corrected and resubmitted in time.",
}
DUE_BASIS_LABELS = {
    "facility_target": "The facility's target turnaround",
    "hipaa_access": "HIPAA's 30-day access clock",
    "legal_process": "The return date of the legal process",
}
KIND_LABELS = {
    "authorization": "Signed HIPAA authorization", "representative_authority": "Proof of representative's authority",
    "letters_of_authority": "Letters of authority (estate)", "subpoena": "Subpoena", "court_order": "Court order",
    "satisfactory_assurances": "Satisfactory assurances", "death_certificate": "Death certificate",
    "supporting": "Other supporting document", "release": "Released records",
}
EVENT_LABELS = {
    "created": "Request created", "updated": "Details changed", "status_changed": "Status changed",
    "routing_decided": "Routing decided", "routed": "Placed in the records team's queue",
    "document_added": "Document added", "upload_blocked": "Upload refused: the virus scanner found malware",
    "hold_reason_changed": "Held: the patient revoked the authorization", "review_passed": "Review passed",
    "records_released": "Records released", "document_withdrawn": "Released records withdrawn",
    "assigned": "Assigned to another specialist",
    "handed_over": "Delivered to the records team",
    "invoice_issued": "Invoice issued", "payment_recorded": "Payment recorded", "invoice_disputed": "Invoice disputed",
    "stale_warning": "No recent activity: closing soon", "due_date_extended": "Due date extended",
}


def due_basis_text(resource: dict) -> str:
    """Which clock set the due date, in words with what it cites (the facility's rule already says both)."""
    basis, rule = resource.get("due_basis"), resource.get("due_rule")
    if basis == "facility_target" and rule:
        return rule
    label = DUE_BASIS_LABELS.get(basis, basis or "")
    return f"{label} ({rule})" if basis == "hipaa_access" and rule else label


def status_label(status: str) -> str:
    """The status in words."""
    return STATUS_LABELS.get(status, (status, ""))[0]


def status_hint(status: str) -> str:
    """What the status means for the requester."""
    return STATUS_LABELS.get(status, ("", ""))[1]


def local_time(value: datetime | None) -> str:
    """A timestamp in the facilities' time zone, to the minute."""
    if value is None:
        return ""
    return local(value, clock().timezone).strftime("%b %-d, %Y %-I:%M %p")


def long_date(value: date | str | None) -> str:
    """A date as people write it."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = date.fromisoformat(value)
    return value.strftime("%b %-d, %Y")


def money(cents) -> str:
    """Cents as dollars."""
    if cents is None:
        return ""
    return f"${int(cents) / 100:,.2f}"


def field_id(path: str | None) -> str:
    """The HTML id of the input for a body path (`authorization.expires_on` → `f-authorization-expires_on`)."""
    return "f-" + (path or "form").replace(".", "-").replace("[", "-").replace("]", "")


def file_size(size: int | None) -> str:
    """Bytes in human units."""
    if size is None:
        return ""
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    return ""


def portal_csrf() -> str:
    """The session's CSRF token (a global, so macros imported without context can use it)."""
    portal = g.get("portal")
    return portal.csrf_token if portal else ""


def install(app: Flask) -> None:
    """Register the filters and the per-request context."""
    app.jinja_env.filters.update(status_label=status_label, status_hint=status_hint, local_time=local_time,
                                 due_basis_text=due_basis_text,
                                 long_date=long_date, money=money, field_id=field_id, file_size=file_size)
    app.jinja_env.globals.update(REASON_LABELS=REASON_LABELS, KIND_LABELS=KIND_LABELS, EVENT_LABELS=EVENT_LABELS,
                                 portal_csrf=portal_csrf, new_form_id=lambda: uuid.uuid4().hex)

    @app.context_processor
    def portal_context():
        portal = g.get("portal")
        principal = g.get("principal") if portal else None
        return {"portal": portal, "principal": principal,
                "csrf_token": portal.csrf_token if portal else None,
                "is_requester": bool(principal and principal.is_requester),
                "is_requester_admin": bool(principal and principal.has_role("requester_admin")),
                "is_staff": bool(principal and principal.has_role("facility_staff"))}

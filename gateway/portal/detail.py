"""A request's page, shared by the pages that act on it: the audited read, timeline, staff view and thread."""

from __future__ import annotations

from flask import g, request

from gateway.auth.models import Organization
from gateway.auth.web import audit_context
from gateway.facilities.service import get_facility
from gateway.intake import assessment, documents, lifecycle, service
from gateway.intake.views import visible_request
from gateway.messages import service as message_service
from gateway.portal import forms
from gateway.portal.templating import REASON_LABELS, status_label
from gateway.portal.web import CONTENT_SECURITY_POLICY
from gateway.portal.web import page as _page
from gateway.routing import staff
from gateway.web import adapters, clock, db_session

TIMELINE_PAGE = 200
THREAD_PAGE = 200
QUEUE_LABELS = {"facility": "Facility", "legal-review": "Legal review", "sensitive-review": "Sensitive review"}
# The staff request page frames the document viewer (`staff.view_document`), and nothing else: the portal's
# policy plus our own frames.
FRAMING_CSP = CONTENT_SECURITY_POLICY + "; frame-src 'self'"
# The document the rules rest on, shown beside the checks, by legal basis.
PRIMARY_KINDS = {"authorization": "authorization", "subpoena": "subpoena", "court_order": "court_order"}
ORG_KIND_LABELS = {"law_firm": "Law firm", "insurer": "Insurer", "provider": "Healthcare provider"}
CLOCK_LABELS = {"legal_process": "The legal process's return date",
                "hipaa_access": "HIPAA's 30-day clock for a patient's own request",
                "facility_target": "The facility's turnaround target"}
ASSIGNABLE = ("routed", "in_progress", "on_hold", "awaiting_payment")
# What a browser shows in a frame; a TIFF it would only download, so that one is offered as a download.
FRAMEABLE_TYPES = ("application/pdf", "image/png", "image/jpeg")


def queue_label(queue: str | None) -> str:
    """A routing queue in words (`facility.tufts-mc` is the facility's own queue)."""
    if not queue:
        return ""
    return QUEUE_LABELS.get(queue, QUEUE_LABELS["facility"] if queue.startswith("facility.") else queue)


def shown_request(request_id: str):
    """A request the caller may see, its page view audited (a foreign or missing one is the 404 page)."""
    req = visible_request(request_id)
    service.audit_read(adapters().db, g.principal, "request.read", "request", req.id, audit_context())
    return req


def _whole_timeline(session, req) -> list:
    """Every event of the request, oldest first (page after page: a long timeline is never cut short)."""
    events, cursor = [], None
    while True:
        page, cursor = service.list_events(session, g.principal, req, limit=TIMELINE_PAGE, cursor=cursor)
        events.extend(page)
        if cursor is None:
            return events


def render_detail(req, *, status: int = 200, submit_errors=(), action_errors=()):
    """The request's page (`request_detail.html`), with any refusal of the form that was sent beside it."""
    session = db_session()
    resource = assessment.resource(session, req, on=clock().today(), viewer=g.principal)
    events = _whole_timeline(session, req)
    facility = get_facility(session, req.facility)
    last_return = next((e for e in reversed(events) if e.type == "status_changed"
                        and e.status in ("returned", "denied") and e.detail.get("reasons")), None)
    staff_viewer = g.principal.has_role("facility_staff")
    context = {"req": req, "r": resource, "events": events, "facility": facility, "last_return": last_return,
               "submit_errors": list(submit_errors), "action_errors": list(action_errors),
               "editable": req.status in service.EDITABLE and g.principal.is_requester,
               "cancellable": req.status in service.CANCELLABLE and g.principal.is_requester,
               "releases": [d for d in resource["documents"] if d.kind == "release"],
               "upload_kinds": documents.STAFF_KINDS if staff_viewer else documents.REQUESTER_KINDS,
               "can_upload": (req.status in service.EDITABLE and g.principal.is_requester)
               or (staff_viewer and req.status in documents.RELEASE_UPLOADABLE),
               "can_withdraw": staff_viewer and req.status != "fulfilled",
               "created": request.args.get("created") == "1", "today": clock().today(),
               "labels": forms.CHOICE_LABELS}
    if staff_viewer:
        context.update(staff_context(req))
    context.update(message_context(req))
    return _page("portal/request_detail.html", status, **context)


def message_context(req) -> dict:
    """What `_messages.html` shows: the whole thread the viewer may see (none before submission) and the form."""
    form = g.get("message_form") or {}
    context = {"thread": None, "message_errors": form.get("errors", []), "message_body": form.get("body", "")}
    if req.submitted_at is None:
        return context
    session, thread, cursor = db_session(), [], None
    while True:
        page, cursor = message_service.list_messages(session, g.principal, req, limit=THREAD_PAGE, cursor=cursor)
        thread.extend(page)
        if cursor is None:
            break
    message_service.audit_read(adapters().db, g.principal, req.id, audit_context())
    context["thread"] = thread
    return context


def staff_context(req) -> dict:
    """What the staff partials need on the request page: the moves allowed now, reasons, claim state and
    colleagues (`_staff_actions.html`), and the request as a clerk reads it (`_staff_summary.html`)."""
    session = db_session()
    in_review = req.routing_queue in staff.REVIEW_QUEUES
    # `routed` passes a reviewed request on; in the facility queue it unclaims one being worked.
    moves = [to for to in staff.TRANSITIONS.get(req.status, ()) if to != "routed" or in_review
             or req.status == "in_progress"]
    payment_due = lifecycle.invoice_due(session, req)
    if payment_due:  # the payment releases the records (see the invoice); no transition does
        moves = [to for to in moves if to != "fulfilled"]
    labels = {"routed": "Pass on to the next queue (review done)" if in_review else "Unclaim (back to the queue)",
              "in_progress": "In progress"}
    posted = request.method == "POST" and request.endpoint == "portal.transition_request"
    values = {"to": request.form.get("to", ""), "reasons": request.form.getlist("reasons"),
              "note": request.form.get("note", "")} if posted else {"to": "", "reasons": [], "note": ""}
    assigned_to_me = bool(req.assigned_to) and req.assigned_to == g.principal.audit_actor
    colleagues = [(u.id, u.email) for u in staff.assignable_colleagues(session, req.facility)
                  if f"user:{u.id}" != req.assigned_to]
    return {"staff_actions": {
        "transitions": [(to, labels.get(to) or status_label(to)) for to in moves],
        "reasons": [(code, REASON_LABELS.get(code, code)) for code in staff.REASONS],
        "needs_reasons": staff.NEEDS_REASONS,
        "claimable": req.status == "routed",
        "unclaimable": assigned_to_me and req.status == "in_progress" and not in_review,
        "assigned_to_me": assigned_to_me,
        "assigned": bool(req.assigned_to),
        "assignee": staff.assignee_email(session, req.assigned_to),
        "colleagues": colleagues if req.status in ASSIGNABLE else [],
        "assign_value": request.form.get("user_id", "") if request.endpoint == "portal.assign_request" else "",
        "in_review": in_review,
        "payment_due": payment_due,
        "queue": queue_label(req.routing_queue),
        "values": values,
    }, "staff_view": staff_view(session, req)}


def staff_view(session, req) -> dict:
    """The request as a clerk reads it: who asks, the clock behind the due date, today's checks, the document."""
    org = session.get(Organization, req.org_id)
    # The clock recorded at submission; requests submitted before it was recorded have it recomputed.
    if req.due_basis:
        due_clock = (CLOCK_LABELS.get(req.due_basis, req.due_basis), req.due_rule or "")
    else:
        deadline = assessment.due_clock(session, req, timezone=clock().timezone)
        due_clock = (CLOCK_LABELS.get(deadline.basis, deadline.basis), deadline.rule) if deadline else None
    today = clock().today()
    live = assessment.assess_request(session, req, on=today)
    kind = PRIMARY_KINDS.get(req.pathway, "authorization")
    shown = [d for d in req.documents if d.kind == kind and d.scan_status == "clean"]
    document = shown[-1] if shown else None  # the latest upload of that kind
    frameable = document is not None and document.content_type in FRAMEABLE_TYPES
    if frameable:
        g.portal_csp = FRAMING_CSP
    return {
        "org_name": org.name if org else "", "org_kind": ORG_KIND_LABELS.get(org.kind, org.kind) if org else "",
        "due_clock": due_clock,
        "checks_today": live.deficiencies, "today": today,
        "document": document, "document_kind": kind, "other_documents": shown[:-1],
        "document_is_pdf": bool(document and document.content_type == "application/pdf"),
        "document_frameable": frameable,
    }

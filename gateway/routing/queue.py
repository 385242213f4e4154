"""The facility queue: filters, sort, and search by reference or patient name (API.md "Queue"; the portal's queue).

Filters and sort are SQL: open statuses (or one of them), a queue, the caller's own or unclaimed work, due
today or overdue (judged against the facilities' calendar), oldest due date first or last updated first.

Search is different. The patient is a JSON column, and names must match as a clerk reads them — "silva" finds
"Sílva", "ana s" finds "Ana Silva", a former name counts — on SQLite and PostgreSQL alike. Rather than a
normalized copy of every name kept up to date on every write (a schema change, and a second truth to keep in
step), the search reads the filtered queue in its own order, a batch at a time, and judges each row in Python
with the rules' own name normalization (`intake.search.matcher`, which the requester's caseload shares). The
candidates are one facility's *open* work only — at a hospital's volume a few thousand rows — and each call
reads at most `SEARCH_SCAN_LIMIT` of them (id, reference, patient and the sort keys, not whole requests); past
that bound the page is returned with what it found and a cursor that resumes where the reading stopped
(`pagination.keyset_filtered_page`), so the cost of a call is bounded at any volume and nothing is skipped.

Search terms are arguments, never stored: they travel in a POST body (never a URL), and neither the audit
entry (`queue.search`, naming the facility) nor any log carries them.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.auth.principal import Principal
from gateway.auth.tenancy import visible_select
from gateway.intake import invoices
from gateway.intake.models import RecordsRequest
from gateway.intake.routing_policy import REVIEW_QUEUES, facility_queue
from gateway.intake.search import (  # noqa: F401  (the limits are the queue's API too)
    SEARCH_BATCH,
    SEARCH_MAX_LENGTH,
    SEARCH_MIN_LENGTH,
    SEARCH_SCAN_LIMIT,
    matcher,
)
from gateway.pagination import keyset_filtered_page, keyset_page
from gateway.routing.staff import require_staff_of

OPEN_STATUSES = ("routed", "in_progress", "on_hold", "awaiting_payment")
QUEUES = ("facility", *REVIEW_QUEUES)
ASSIGNED = ("me", "nobody")
DUE = ("today", "overdue")
# Oldest due date first (requests without one last), or the most recently changed first.
SORTS = {"due_on": ((RecordsRequest.due_on, RecordsRequest.id), False),
         "-updated_at": ((RecordsRequest.updated_at, RecordsRequest.id), True)}


def queue_page(session: Session, principal: Principal, facility: str, *, status: str | None = None,
               queue: str | None = None, assigned: str | None = None, due: str | None = None,
               sort: str = "due_on", text: str | None = None, limit: int, cursor: str | None, today: date):
    """The facility's open work, filtered and sorted, optionally searched; returns (items, next_cursor)."""
    require_staff_of(principal, facility)
    query = visible_select(principal, RecordsRequest).where(RecordsRequest.facility == facility)
    query = query.where(RecordsRequest.status == status) if status else query.where(
        RecordsRequest.status.in_(OPEN_STATUSES))
    if queue:
        query = query.where(RecordsRequest.routing_queue == (queue if queue in REVIEW_QUEUES
                                                             else facility_queue(facility)))
    if assigned == "me":
        query = query.where(RecordsRequest.assigned_to == principal.audit_actor)
    elif assigned == "nobody":
        query = query.where(RecordsRequest.assigned_to.is_(None))
    if due == "today":
        query = query.where(RecordsRequest.due_on == today)
    elif due == "overdue":
        query = query.where(RecordsRequest.due_on < today)
    columns, descending = SORTS[sort]
    if text is None:
        items, next_cursor = keyset_page(session, query, columns=list(columns), limit=limit, cursor=cursor,
                                         descending=descending)
    else:
        lean = query.with_only_columns(RecordsRequest.id, RecordsRequest.reference, RecordsRequest.patient,
                                       *columns[:-1])
        rows, next_cursor = keyset_filtered_page(session, lean, columns=list(columns), limit=limit, cursor=cursor,
                                                 keep=matcher(text), descending=descending, batch=SEARCH_BATCH,
                                                 max_scanned=SEARCH_SCAN_LIMIT)
        found = {r.id: r for r in session.scalars(select(RecordsRequest).where(
            RecordsRequest.id.in_([row.id for row in rows])))}
        items = [found[row.id] for row in rows if row.id in found]
    invoiced = invoices.queue_flags(session, [r.id for r in items])
    return [queue_item(r, today, invoice=invoiced.get(r.id)) for r in items], next_cursor


def queue_item(req: RecordsRequest, today: date, *, invoice: tuple[str, bool] | None = None) -> dict:
    """One line of the staff queue: what to work next, whether it is late, and its invoice (status, disputed)."""
    return {"id": req.id, "reference": req.reference, "status": req.status, "queue": req.routing_queue,
            "pathway": req.pathway, "purpose": req.purpose, "due_on": req.due_on, "routed_at": req.routed_at,
            "updated_at": req.updated_at, "assigned_to": req.assigned_to, "documents": len(req.documents),
            "version": req.version, "hold_reason": req.hold_reason,
            "overdue": bool(req.due_on and req.due_on < today), "due_today": req.due_on == today,
            "invoice_status": invoice[0] if invoice else None, "disputed": bool(invoice and invoice[1])}

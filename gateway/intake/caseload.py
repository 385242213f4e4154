"""A requester's caseload: the request list's filters and sorts, search, and the CSV export (API.md v1.1).

Filters and sorts are SQL over the tenant guard's own select, paged with the typed keyset cursors of
`gateway.pagination` (every item once, in order, across pages, however many share a sort value).
`overdue` is judged against the facilities' calendar (the injected clock's today): a request the records
team still owes (`submitted`, `routed`, `in_progress`, `on_hold`) whose `due_on` has passed.

Search (by reference or patient name) is `intake.search.matcher`, the staff queue's: terms come in a POST
body and are never stored, logged or audited.

The export streams: rows are read a batch at a time, each batch in its own short session, resuming after
the last row with the same keyset condition as paging, and written out as CSV as they come, so memory stays
bounded whatever the size of the caseload.  It carries no date of birth and no MRN, and every cell a
spreadsheet could read as a formula (`=`, `+`, `-`, `@`, tab, carriage return first) is prefixed with `'`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.auth.principal import Principal
from gateway.auth.tenancy import visible_select
from gateway.db import Database
from gateway.intake.models import RecordsRequest
from gateway.intake.search import SEARCH_BATCH, SEARCH_SCAN_LIMIT, matcher
from gateway.pagination import keyset_filtered_page, keyset_page

# Newest first (the default), oldest due date first (requests without one last), last updated first.
SORTS = {"-created_at": ((RecordsRequest.created_at, RecordsRequest.id), True),
         "due_on": ((RecordsRequest.due_on, RecordsRequest.id), False),
         "-updated_at": ((RecordsRequest.updated_at, RecordsRequest.id), True)}
DEFAULT_SORT = "-created_at"
# What the records team still owes: past due_on, these are overdue.
OWED_STATUSES = ("submitted", "routed", "in_progress", "on_hold")
EXPORT_BATCH = 500
CSV_COLUMNS = ("id", "reference", "group_id", "status", "facility", "pathway", "purpose", "patient_first_name",
               "patient_last_name", "record_types", "delivery_method", "due_on", "overdue", "created_at",
               "updated_at", "submitted_at")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def filtered(principal: Principal, *, today: date, status: str | None = None, facility: str | None = None,
             reference: str | None = None, created_after: datetime | None = None,
             updated_after: datetime | None = None, overdue: bool = False):
    """The principal's visible requests with the list's filters, as a select to page, search or export."""
    query = visible_select(principal, RecordsRequest)
    if status:
        query = query.where(RecordsRequest.status == status)
    if facility:
        query = query.where(RecordsRequest.facility == facility)
    if reference:
        query = query.where(RecordsRequest.reference == reference)
    if created_after:
        query = query.where(RecordsRequest.created_at > created_after)
    if updated_after:
        query = query.where(RecordsRequest.updated_at > updated_after)
    if overdue:
        query = query.where(RecordsRequest.status.in_(OWED_STATUSES), RecordsRequest.due_on < today)
    return query


def page(session: Session, query, *, sort: str = DEFAULT_SORT, limit: int, cursor: str | None):
    """One page of `query` in the order `sort` names; returns (items, next_cursor)."""
    columns, descending = SORTS[sort]
    return keyset_page(session, query, columns=list(columns), limit=limit, cursor=cursor, descending=descending)


def search(session: Session, query, *, text: str, sort: str = DEFAULT_SORT, limit: int, cursor: str | None):
    """`query` searched by reference or patient name, at most SEARCH_SCAN_LIMIT rows read a call; returns
    (items, next_cursor) — a page may hold fewer than `limit` items and still have a next_cursor."""
    columns, descending = SORTS[sort]
    lean = query.with_only_columns(RecordsRequest.id, RecordsRequest.reference, RecordsRequest.patient,
                                   *columns[:-1])
    rows, next_cursor = keyset_filtered_page(session, lean, columns=list(columns), limit=limit, cursor=cursor,
                                             keep=matcher(text), descending=descending, batch=SEARCH_BATCH,
                                             max_scanned=SEARCH_SCAN_LIMIT)
    found = {r.id: r for r in session.scalars(select(RecordsRequest).where(
        RecordsRequest.id.in_([row.id for row in rows])))}
    return [found[row.id] for row in rows if row.id in found], next_cursor


def safe_cell(value) -> str:
    """A CSV cell no spreadsheet runs as a formula (OWASP "CSV injection"): a leading =, +, -, @, tab or CR
    gets a `'` in front; None is empty."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _timestamp(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def csv_row(req: RecordsRequest, today: date) -> list[str]:
    """One request as a CSV row: no date of birth, no MRN."""
    patient = req.patient if isinstance(req.patient, dict) else {}
    records = req.records if isinstance(req.records, dict) else {}
    delivery = req.delivery if isinstance(req.delivery, dict) else {}
    overdue = bool(req.due_on and req.due_on < today and req.status in OWED_STATUSES)
    values = (req.id, req.reference, req.group_id, req.status, req.facility, req.pathway, req.purpose,
              patient.get("first_name"), patient.get("last_name"), " ".join(records.get("types") or ()),
              delivery.get("method"), req.due_on.isoformat() if req.due_on else None, "true" if overdue else "false",
              _timestamp(req.created_at), _timestamp(req.updated_at), _timestamp(req.submitted_at))
    return [safe_cell(v) for v in values]


def export_csv(db: Database, query, *, sort: str = DEFAULT_SORT, today: date,
               batch: int = EXPORT_BATCH) -> Iterator[str]:
    """The CSV of every request `query` selects, in `sort` order, as text chunks: a header, then a chunk per
    batch of rows, each batch read in its own session (nothing held between batches but the cursor)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    yield out.getvalue()
    cursor = None
    while True:
        with db.sessions() as session:
            items, cursor = page(session, query, sort=sort, limit=batch, cursor=cursor)
            out.seek(0)
            out.truncate()
            for req in items:
                writer.writerow(csv_row(req, today))
        yield out.getvalue()
        if cursor is None:
            return

"""The requester's request list: filters, sort, search by reference or patient name, and the CSV export.

Filters and sort are plain GET parameters (a bookmarkable view: nothing in them is PHI).  Search terms never
enter a URL, the history or a log: the form posts them; without terms the post is answered with a redirect to
the filtered view, with terms the results are the answer itself, and the pager of a search posts the terms
again in a hidden field.  The export link carries the filters only.  Listing, search and export are the API's
(`intake.caseload`), inside the same tenant guard, and audited as the API audits them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from flask import Response, g, redirect, request, stream_with_context, url_for
from marshmallow import ValidationError

from gateway.auth.web import audit_context, requires
from gateway.errors import FieldError, Unprocessable, flatten_messages
from gateway.facilities.service import list_facilities
from gateway.intake import caseload, service
from gateway.intake.models import STATUSES
from gateway.intake.schemas import RequestSearchSchema
from gateway.portal import bp
from gateway.portal.web import page
from gateway.web import adapters, clock, db_session

REQUESTERS = ("requester", "requester_admin")
PAGE_SIZE = 25
SORT_LABELS = {"-created_at": "Newest first", "due_on": "Due date, oldest first",
               "-updated_at": "Last updated, newest first"}
_TEXT_MESSAGE = "Enter 2 to 100 characters of a reference or a patient's name."


@dataclass(frozen=True)
class ListView:
    """What the list shows: the filters, the sort, the page's cursor and any search terms."""

    status: str | None = None
    facility: str | None = None
    overdue: bool = False
    sort: str = caseload.DEFAULT_SORT
    cursor: str | None = None
    text: str | None = None

    def link(self, **changes) -> dict:
        """url_for arguments of this view without the search terms (never in a URL), defaults left out."""
        values = {**asdict(replace(self, **changes)), "text": None}
        values["overdue"] = "true" if values["overdue"] else None
        if values["sort"] == caseload.DEFAULT_SORT:
            values["sort"] = None
        return {name: value for name, value in values.items() if value}

    @property
    def filters(self) -> dict:
        """The filters as `caseload.filtered` takes them."""
        return {"status": self.status, "facility": self.facility, "overdue": self.overdue}


def _view(source, facility_names) -> ListView:
    """The view named by query parameters or form fields; an unknown filter value is the 422 page."""
    status, facility = source.get("status") or None, source.get("facility") or None
    sort = source.get("sort") or caseload.DEFAULT_SORT
    overdue = source.get("overdue") or None
    if status not in (None, *STATUSES) or (facility is not None and facility not in facility_names) \
            or sort not in caseload.SORTS or overdue not in (None, "true"):
        raise Unprocessable("Unknown filter value.", code="VALIDATION_FAILED")
    text = " ".join((source.get("text") or "").split())[:200] or None
    return ListView(status=status, facility=facility, overdue=overdue == "true", sort=sort,
                    cursor=(source.get("cursor") or "")[:200] or None, text=text)


def _names() -> dict[str, str]:
    return {f.code: f.name for f in list_facilities(db_session())}


def _search_problem(view: ListView) -> FieldError | None:
    """The API's own check of the search (length, characters), as a message beside the search field."""
    try:
        RequestSearchSchema().load({"text": view.text, "sort": view.sort, "cursor": view.cursor})
    except ValidationError as invalid:
        fields = {(e.field or "").split(".")[0] for e in flatten_messages(invalid.messages)}
        return FieldError("INVALID_FIELD", "text", _TEXT_MESSAGE if "text" in fields
                          else "The search could not be continued. Search again.")
    return None


def _render(view: ListView, names: dict[str, str]):
    """The list for `view` (a read of the list, audited; a search audited as one, without its terms)."""
    principal, session, today = g.principal, db_session(), clock().today()
    errors, items, next_cursor, status = [], [], None, 200
    problem = _search_problem(view) if view.text is not None else None
    if problem is not None:
        errors, status = [problem], 422
    else:
        query = caseload.filtered(principal, today=today, **view.filters)
        if view.text is None:
            items, next_cursor = caseload.page(session, query, sort=view.sort, limit=PAGE_SIZE, cursor=view.cursor)
        else:
            items, next_cursor = caseload.search(session, query, text=view.text, sort=view.sort, limit=PAGE_SIZE,
                                                 cursor=view.cursor)
        service.audit_read(adapters().db, principal, "request.list" if view.text is None else "request.search",
                           "request", None, audit_context())
    return page("portal/request_list.html", status, items=items, next_cursor=next_cursor, view=view,
                searched=view.text is not None and problem is None, errors=errors, facility_names=names,
                statuses=STATUSES, sorts=SORT_LABELS, today=today, page_size=PAGE_SIZE,
                owed=caseload.OWED_STATUSES)


@bp.route("/requests")
@requires(*REQUESTERS)
def request_list():
    """The organization's requests, newest first (or by due date or last update), filtered."""
    names = _names()
    return _render(replace(_view(request.args, names), text=None), names)


@bp.route("/requests", methods=["POST"])
@requires(*REQUESTERS)
def request_search():
    """The search and filter form: filters alone redirect to their view; search terms are answered here."""
    names = _names()
    view = _view(request.form, names)
    if view.text is None:
        return redirect(url_for("portal.request_list", **view.link(cursor=None)), code=303)
    return _render(view, names)


@bp.route("/requests/export.csv")
@requires(*REQUESTERS)
def request_export():
    """The filtered list as CSV, every page of it, streamed (no date of birth; formula-safe cells)."""
    view = _view(request.args, _names())
    today = clock().today()
    query = caseload.filtered(g.principal, today=today, **view.filters)
    service.audit_read(adapters().db, g.principal, "request.export", "request", None, audit_context())
    response = Response(stream_with_context(caseload.export_csv(adapters().db, query, sort=view.sort, today=today)),
                        mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="requests.csv"'
    response.headers["Cache-Control"] = "no-store"
    return response

"""The records team's queue page: filters, sort, search, and claim, unclaim or reassign from the list.

Filters and sort are plain GET parameters (a bookmarkable view of the queue: nothing in them is PHI).
Search terms — a reference or a patient's name — never enter a URL, the history or a log: the form posts
them; without terms the post is answered with a redirect to the filtered view, with terms the results are
the answer itself, and the pager and the row actions post the terms again in their own hidden fields.
The search and the actions are the API's (`routing.queue.queue_page`, `routing.staff`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from flask import g, redirect, request, url_for
from marshmallow import ValidationError

from gateway.auth.web import audit_context, requires
from gateway.errors import Conflict, FieldError, Forbidden, NotFound, Unprocessable, flatten_messages
from gateway.facilities.service import list_facilities
from gateway.intake import service
from gateway.intake.views import visible_request
from gateway.portal import bp, forms
from gateway.portal.detail import ASSIGNABLE, QUEUE_LABELS, queue_label
from gateway.portal.web import page
from gateway.routing import queue as queues
from gateway.routing import staff
from gateway.routing.views import QueueSearchSchema
from gateway.web import adapters, clock, db_session

PAGE_SIZE = 25
FILTERS = ("status", "queue", "assigned", "due")
ASSIGNED_LABELS = {"me": "Mine", "nobody": "Unassigned"}
DUE_LABELS = {"today": "Due today", "overdue": "Overdue"}
SORT_LABELS = {"due_on": "Due date, oldest first", "-updated_at": "Last updated, newest first"}
NOTICES = {"claim": "Claimed: the request is in progress, assigned to you.",
           "unclaim": "Unclaimed: the request is back in the queue for any clerk.",
           "assign": "Assigned: the request is now your colleague's."}
_TEXT_MESSAGE = (f"Enter {queues.SEARCH_MIN_LENGTH} to {queues.SEARCH_MAX_LENGTH} characters of a reference or "
                 "a patient's name.")


@dataclass(frozen=True)
class QueueView:
    """What the page shows: the facility, the filters, the sort, the page's cursor and any search terms."""

    facility: str
    status: str | None = None
    queue: str | None = None
    assigned: str | None = None
    due: str | None = None
    sort: str = "due_on"
    cursor: str | None = None
    text: str | None = None

    def link(self, **changes) -> dict:
        """url_for arguments of this view without the search terms (never in a URL), default sort left out."""
        values = {**asdict(replace(self, **changes)), "text": None}
        if values["sort"] == "due_on":
            values["sort"] = None
        return {name: value for name, value in values.items() if value}


def _view(source) -> QueueView:
    """The view named by query parameters or form fields; an unknown filter value is the 422 page."""
    mine = sorted(g.principal.facilities)
    if not mine:
        raise Forbidden("You are not assigned to a facility yet. Ask a gateway administrator to add you to one.")
    values = {name: (source.get(name) or None) for name in FILTERS}
    sort = source.get("sort") or "due_on"
    allowed = {"status": queues.OPEN_STATUSES, "queue": queues.QUEUES, "assigned": queues.ASSIGNED,
               "due": queues.DUE}
    if any(value is not None and value not in allowed[name] for name, value in values.items()) \
            or sort not in queues.SORTS:
        raise Unprocessable("Unknown filter value.", code="VALIDATION_FAILED")
    text = " ".join((source.get("text") or "").split())[:200] or None
    return QueueView(facility=source.get("facility") or mine[0], sort=sort,
                     cursor=(source.get("cursor") or "")[:200] or None, text=text, **values)


def _search_problem(view: QueueView) -> FieldError | None:
    """The API's own check of the search (length, characters), as a message beside the search field."""
    try:
        QueueSearchSchema().load({"text": view.text, "sort": view.sort, "cursor": view.cursor,
                                  "filters": {k: v for k, v in asdict(view).items() if k in FILTERS and v}})
    except ValidationError as invalid:
        fields = {(e.field or "").split(".")[0] for e in flatten_messages(invalid.messages)}
        return FieldError("INVALID_FIELD", "text", _TEXT_MESSAGE if "text" in fields
                          else "The search could not be continued. Search again.")
    return None


def _render(view: QueueView, *, status: int = 200, errors=(), notice: str | None = None):
    """The queue page for `view` (a read of the queue, audited; a search audited as one, without its terms)."""
    principal, session, today = g.principal, db_session(), clock().today()
    errors, items, next_cursor = list(errors), [], None
    problem = _search_problem(view) if view.text is not None else None
    if problem is not None:
        errors, status = [problem], 422
    else:
        # queue_page refuses a facility the viewer is not staff of (403), exactly as the API does.
        items, next_cursor = queues.queue_page(
            session, principal, view.facility, status=view.status, queue=view.queue, assigned=view.assigned,
            due=view.due, sort=view.sort, text=view.text, limit=PAGE_SIZE, cursor=view.cursor, today=today)
        service.audit_read(adapters().db, principal, "queue.read" if view.text is None else "queue.search",
                           "facility", view.facility, audit_context())
    searched = view.text is not None and problem is None
    names = {f.code: f.name for f in list_facilities(session)}
    colleagues = staff.assignable_colleagues(session, view.facility) \
        if view.facility in principal.facilities else []
    return page("portal/queue.html", status, items=items, next_cursor=next_cursor, view=view, searched=searched,
                errors=errors, notice=notice, today=today, page_size=PAGE_SIZE,
                facilities=[(code, names.get(code, code)) for code in sorted(principal.facilities)],
                facility_name=names.get(view.facility, view.facility),
                status_filters=queues.OPEN_STATUSES, queue_filters=[(q, QUEUE_LABELS[q]) for q in queues.QUEUES],
                assigned_filters=ASSIGNED_LABELS, due_filters=DUE_LABELS, sorts=SORT_LABELS,
                colleagues=[(u.id, u.email) for u in colleagues],
                emails={f"user:{u.id}": u.email for u in colleagues}, assignable=ASSIGNABLE,
                queue_label=queue_label, purposes=forms.CHOICE_LABELS["purpose"], me=principal.audit_actor,
                review_queues=staff.REVIEW_QUEUES)


@bp.route("/queue")
@requires("facility_staff")
def queue():
    """The facility's open work, filtered and sorted (oldest due date first by default), overdue flagged."""
    view = _view(request.args)
    notice = NOTICES.get(request.args.get("done") or "")
    return _render(replace(view, text=None), notice=notice)


@bp.route("/queue", methods=["POST"])
@requires("facility_staff")
def queue_search():
    """The filter and search form: filters alone redirect to their view; search terms are answered here."""
    view = _view(request.form)
    if view.text is None:
        return redirect(url_for("portal.queue", **view.link(cursor=None)), code=303)
    return _render(view)


@bp.route("/queue/requests/<request_id>/<action>", methods=["POST"])
@requires("facility_staff")
def queue_action(request_id, action):
    """Claim, unclaim or reassign from the list, then the same view of the queue again (refusals shown on it)."""
    if action not in NOTICES:
        raise NotFound()
    view = _view(request.form)
    db, principal, ctx = adapters().db, g.principal, audit_context()
    try:
        if action == "claim":
            staff.claim(db, principal=principal, request_id=request_id, audit_ctx=ctx)
        elif action == "unclaim":
            req = visible_request(request_id)
            if req.routing_queue in staff.REVIEW_QUEUES:  # `routed` would pass it on, not unclaim it
                raise Conflict("A request in a review queue is passed on from its page, not unclaimed.",
                               code="INVALID_TRANSITION")
            staff.change_status(db, principal=principal, request_id=request_id, to="routed", reasons=[],
                                note=None, audit_ctx=ctx)
        else:
            user_id = (request.form.get("user_id") or "").strip()[:36]
            if not user_id:
                raise Unprocessable("Choose the colleague to assign the request to.")
            staff.assign(db, principal=principal, request_id=request_id, user_id=user_id, audit_ctx=ctx)
    except (Unprocessable, Conflict) as error:
        return _render(view, status=error.status, errors=[FieldError(error.code, None, error.detail)])
    if view.text is not None:  # search results: answered in place, the terms never in a redirect
        return _render(view, notice=NOTICES[action])
    return redirect(url_for("portal.queue", **view.link(), done=action), code=303)

"""Requester pages for bulk work: import a CSV of requests, then the drafts it made, their uploads and submit.

The import goes through the batch path (gateway.batches: the API's create, item
by item, in a few transactions); the page processes the batch at once so the
answer shows every row, and enqueues the batch's job too, which finds nothing
left to do unless this request died half way.  Uploads on the drafts page go
one file per request through the portal's single upload endpoint (scanned,
like every upload); "submit all ready" submits each draft through the
lifecycle and counts the ones whose checks still fail.
"""

from __future__ import annotations

import re
import time

from flask import g, make_response, redirect, request, url_for

from gateway.auth.web import audit_context, requires
from gateway.batches import service as batches
from gateway.batches.views import start_job
from gateway.errors import FieldError, GatewayError
from gateway.facilities.service import get_facility
from gateway.intake import assessment, documents, service, submission
from gateway.portal import bp, csv_import, forms
from gateway.portal.web import page
from gateway.web import adapters, clock, db_session, settings

REQUESTERS = ("requester", "requester_admin")
# How long a page's request works before answering (well inside the server's 30 s worker timeout): an
# import's rows past it are left to the batch's job, drafts past it to the next "submit all ready".
PAGE_BUDGET_SECONDS = 15.0


def _practice_required(code: str | None) -> bool:
    facility = get_facility(db_session(), code) if code else None
    return bool(facility and facility.requires_practice)


def _imports_page(status: int = 200, *, error: str | None = None):
    recent = batches.list_batches(db_session(), g.principal)
    return page("portal/imports.html", status, recent=recent, error=error, columns=csv_import.COLUMNS,
                flags=forms.FLAGS, lists=(*forms.LISTS, "patient.other_names"), max_rows=batches.MAX_ITEMS,
                labels=forms.LABELS)


@bp.route("/imports", methods=["GET"])
@requires(*REQUESTERS)
def imports():
    """The CSV import form, how to write the file, and the organization's latest imports."""
    return _imports_page()


@bp.route("/imports/template.csv", methods=["GET"])
@requires(*REQUESTERS)
def import_template():
    """A CSV with the usual columns and no rows, to fill in."""
    response = make_response(csv_import.template())
    response.mimetype = "text/csv"
    response.headers["Content-Disposition"] = 'attachment; filename="requests-template.csv"'
    return response


@bp.route("/imports", methods=["POST"])
@requires(*REQUESTERS)
def import_csv():
    """Read the CSV (bounded), create its rows as drafts through the batch path, show what became of each."""
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _imports_page(422, error="Choose a CSV file to import.")
    try:
        parsed = csv_import.parse(upload.read(), practice_required=_practice_required)
    except csv_import.CsvRefused as refused:
        return _imports_page(422, error=str(refused))
    a = adapters()
    batch_id = batches.create_batch(a.db, principal=g.principal, items=parsed.bodies,
                                    secret_key=settings().secret_key, audit_ctx=audit_context())
    start_job(batch_id)  # what this request does not finish (or should it die half way), a worker does
    batches.process(a.db, batch_id=batch_id, secret_key=settings().secret_key,
                    until=time.monotonic() + PAGE_BUDGET_SECONDS)
    return redirect(url_for("portal.import_detail", batch_id=batch_id), code=303)


_ITEM = re.compile(r"^Item (\d+) of this batch")


def _row_errors(item) -> list[FieldError]:
    """An item's errors in the request form's words (labels, not paths; rows of the file, not item indexes)."""
    def words(message: str) -> str:
        return _ITEM.sub(lambda m: f"Row {int(m.group(1)) + 2} of this file", message)

    return [forms.plain(FieldError(e["code"], e.get("field"), words(e["message"]))) for e in item.errors or []]


@bp.route("/imports/<batch_id>", methods=["GET"])
@requires(*REQUESTERS)
def import_detail(batch_id):
    """One import: the rows refused and why (beside each field), and its drafts with checks and upload slots."""
    session, a = db_session(), adapters()
    batch = batches.get_batch(session, g.principal, batch_id, db=a.db, audit_ctx=audit_context())
    service.audit_read(a.db, g.principal, "request.list", "batch", batch.id, audit_context())
    today = clock().today()
    rejected, drafts = [], []
    for item, req in batches.items_of(session, g.principal, batch):
        if item.request_id is None:
            rejected.append({"row": item.index + 2, "reference": item.reference, "errors": _row_errors(item)})
        elif req is not None:
            resource = assessment.resource(session, req, on=today, viewer=g.principal)
            drafts.append({"row": item.index + 2, "req": req, "r": resource,
                           "missing": [d["kind"] for d in resource["required_documents"] if not d["satisfied"]]})
    ready = sum(1 for d in drafts if d["req"].status == "draft" and not d["r"]["deficiencies"])
    return page("portal/import_detail.html", batch=batch, rejected=rejected, drafts=drafts, ready=ready,
                labels=forms.LABELS, upload_kinds=documents.REQUESTER_KINDS,
                submitted=request.args.get("submitted", type=int), not_ready=request.args.get("not_ready", type=int),
                left=request.args.get("left", type=int))


@bp.route("/imports/<batch_id>/submit", methods=["POST"])
@requires(*REQUESTERS)
def import_submit(batch_id):
    """Submit every draft of the import whose checks pass (each through the lifecycle); count the others."""
    session, a = db_session(), adapters()
    batch = batches.get_batch(session, g.principal, batch_id, db=a.db, audit_ctx=audit_context())
    drafts = [req.id for item, req in batches.items_of(session, g.principal, batch)
              if req is not None and req.status == "draft"]
    session.rollback()  # each submit takes its own lock; this read holds none
    submitted = not_ready = left = 0
    deadline = time.monotonic() + PAGE_BUDGET_SECONDS
    for done, request_id in enumerate(drafts):
        if time.monotonic() >= deadline:
            left = len(drafts) - done
            break
        try:
            submission.submit(a.db, principal=g.principal, request_id=request_id, clock=clock(),
                              audit_ctx=audit_context())
            submitted += 1
        except GatewayError as refused:  # deficient (422), or changed meanwhile (409): not ready, said so
            if refused.status >= 500:
                raise
            not_ready += 1
    return redirect(url_for("portal.import_detail", batch_id=batch_id, submitted=submitted, not_ready=not_ready,
                            left=left or None) + "#summary", code=303)

"""The request lifecycle: the one place a request's status changes (API.md v1.1, "The request lifecycle").

    draft → submitted → routed (legal-review → sensitive-review → facility queue) → in_progress
    routed → routed                         staff pass a request on from a review queue
    in_progress → routed                    unclaim, or pass on after claiming in review
    in_progress ⇄ on_hold
    in_progress → awaiting_payment → fulfilled
    in_progress → fulfilled                 no charge, waived, or already paid
    routed | in_progress | on_hold → returned → submitted     (the requester cures it)
    routed | in_progress | on_hold → denied
    submitted | routed | in_progress | awaiting_payment → on_hold    (AUTH_REVOKED only)
    draft | submitted | routed | returned → cancelled

Every change to a request — from the API, the portal, a job or housekeeping —
happens inside `locked_request` (or `locked_for_system`): one transaction that
locks the request row first (SELECT … FOR UPDATE on PostgreSQL; BEGIN
IMMEDIATE on SQLite), checks `If-Match`, and then, through `move` and `touch`,
increments `version` and writes the status, the timeline event, the audit
entry and the notifications (outbox) together.  Two changes to one request
therefore never interleave: what `submit` checked is exactly what is routed,
two claims cannot both win, and `version` counts every change.

Release is `fulfil`, whatever path leads to it (a staff transition, a payment, an invoice with nothing
to pay): it refuses while an invoice is due (PAYMENT_REQUIRED) or the patient has revoked, and it writes
the release's disclosure record (45 CFR 164.528) in the same transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, lazyload

from gateway import outbox
from gateway.audit.service import record
from gateway.auth.principal import Principal
from gateway.auth.tenancy import audit_probe, visible_select
from gateway.db import Database, utcnow
from gateway.errors import Conflict, NotFound, PreconditionFailed
from gateway.intake import disclosures
from gateway.intake.models import RecordsRequest, RequestEvent
from gateway.intake.release_models import Invoice

AUTH_REVOKED = "AUTH_REVOKED"
RELEASED = "fulfilled"
EDGES: dict[str, frozenset[str]] = {
    "draft": frozenset({"submitted", "cancelled"}),
    "submitted": frozenset({"routed", "on_hold", "cancelled"}),
    "routed": frozenset({"routed", "in_progress", "on_hold", "returned", "denied", "cancelled"}),
    "in_progress": frozenset({"routed", "on_hold", "awaiting_payment", "fulfilled", "returned", "denied"}),
    "on_hold": frozenset({"in_progress", "returned", "denied"}),
    "awaiting_payment": frozenset({"fulfilled", "on_hold"}),
    "returned": frozenset({"submitted", "cancelled"}),
}
# Holds only a revocation may impose (staff hold only work they are doing: in_progress → on_hold).
REVOCATION_HOLDS = frozenset({"submitted", "routed", "awaiting_payment"})
# Where a request held for a revocation may go: a new authorization is needed, or no release at all.
REVOKED_EXITS = frozenset({"returned", "denied"})
# Open requests a revocation halts.
HOLDABLE = ("submitted", "routed", "in_progress", "on_hold", "awaiting_payment")
_ETAG = re.compile(r'^\s*(?:W/)?"?(\d{1,10})"?\s*$')


class InvalidTransition(Conflict):
    code, title = "INVALID_TRANSITION", "Invalid transition"


class PaymentRequired(Conflict):
    """An invoice is due: the records leave only once it is paid."""

    code, title = "PAYMENT_REQUIRED", "Payment required"


class RequestRevoked(Conflict):
    """The patient revoked the authorization: no release, no hand-over."""

    code, title = AUTH_REVOKED, "Authorization revoked"


def etag(req: RecordsRequest) -> str:
    """The ETag of a request resource: its version, quoted."""
    return f'"{req.version}"'


def check_version(req: RecordsRequest, if_match: str | None) -> None:
    """412 PRECONDITION_FAILED unless `If-Match` (when sent) names the request's current version (or *)."""
    if if_match is None:
        return
    tags = [tag for tag in if_match.split(",") if tag.strip()]
    if any(tag.strip() == "*" for tag in tags):
        return
    versions = {int(m.group(1)) for m in (_ETAG.match(tag) for tag in tags) if m}
    if req.version not in versions:
        raise PreconditionFailed(f"The request has changed: its version is now {req.version}. Read it again and "
                                 "retry with If-Match set to its current ETag.", version=req.version)


def _locked_row(session: Session, query) -> RecordsRequest | None:
    # FOR NO KEY UPDATE on PostgreSQL: it serialises every lifecycle change of the request as FOR UPDATE
    # does, but lets other transactions insert rows that merely reference it (a timeline event, a job's
    # effect, an e-mail), whose foreign-key check FOR UPDATE would make wait for this whole transaction.
    return session.scalars(query.with_for_update(of=RecordsRequest, key_share=True)).unique().one_or_none()


@contextmanager
def locked_request(db: Database, principal: Principal, request_id: str, *, audit_ctx: dict,
                   if_match: str | None = None) -> Iterator[tuple[Session, RecordsRequest]]:
    """A request the principal may see, row-locked until the transaction ends; commits on success.

    Another tenant's request is the same NotFound as a missing one (the probe is audited after the
    transaction, never inside it: on SQLite a second writer would wait for this one's lock).
    """
    found = False
    try:
        with db.write_transaction() as session:
            # With its documents in the same query: every caller of this lock reads or checks them.
            req = _locked_row(session, visible_select(principal, RecordsRequest)
                              .where(RecordsRequest.id == request_id).options(joinedload(RecordsRequest.documents)))
            if req is None:
                raise NotFound()
            found = True
            check_version(req, if_match)
            yield session, req
    except NotFound:
        if not found:
            audit_probe(db, principal, RecordsRequest, request_id, audit_ctx)
        raise


@contextmanager
def locked_for_system(db: Database, request_id: str) -> Iterator[tuple[Session, RecordsRequest | None]]:
    """The request row-locked for the gateway's own work (relay, jobs, housekeeping); None when missing."""
    with db.write_transaction() as session:
        yield session, _locked_row(session, select(RecordsRequest).where(RecordsRequest.id == request_id))


def lock_many(session: Session, request_ids) -> dict[str, RecordsRequest]:
    """Lock several requests inside an open write transaction (a revocation, a group upload, a relay pass),
    in one statement; {id: request} of those found, in id order.

    Always in id order (PostgreSQL locks the rows as the sorted scan returns them), so two transactions that
    each hold several requests cannot deadlock.  Their documents are read only if a caller asks for them:
    none of the callers needs them for every request, and the relay, which locks a pass's requests while
    SQLite's other writers wait, needs none."""
    query = (select(RecordsRequest).where(RecordsRequest.id.in_(sorted(set(request_ids))))
             .options(lazyload(RecordsRequest.documents))
             .order_by(RecordsRequest.id).with_for_update(of=RecordsRequest, key_share=True))
    return {req.id: req for req in session.scalars(query)}


def touch(req: RecordsRequest) -> None:
    """Count a change to the request (body, documents, assignment): +1 version, updated now."""
    req.version = (req.version or 0) + 1
    req.updated_at = utcnow()


def add_event(session: Session, req: RecordsRequest, type_: str, actor: str, *, staff_only: bool = False,
              **detail) -> RequestEvent:
    """Append to the request's timeline (status is the request's status after the event)."""
    event = RequestEvent(request_id=req.id, type=type_, status=req.status, actor=actor, detail=detail,
                         staff_only=staff_only, at=utcnow())
    session.add(event)
    return event


def notify(session: Session, req: RecordsRequest, event_type: str, *, actor: str | None = None, **data) -> None:
    """An event for the requester (webhooks, e-mail), published by the relay after this transaction commits.

    `data` holds ids, statuses, codes and dates only; `actor` is not published (see outbox.add_notification).
    """
    outbox.add_notification(session, request_id=req.id, org_id=req.org_id, event_type=event_type,
                            data={"request_id": req.id, **data}, actor=actor)


def allowed(req: RecordsRequest, to: str, *, hold_reason: str | None = None) -> None:
    """Raise unless the lifecycle has the edge req.status → to (with the revocation rules)."""
    if req.hold_reason == AUTH_REVOKED and req.status == "on_hold" and to not in REVOKED_EXITS:
        raise RequestRevoked("The patient revoked this authorization: the request can only be returned for a "
                             "new authorization, or denied.")
    if to not in EDGES.get(req.status, frozenset()):
        raise InvalidTransition(f"A {req.status} request cannot become {to}.")
    if to == "on_hold" and req.status in REVOCATION_HOLDS and hold_reason != AUTH_REVOKED:
        raise InvalidTransition(f"A {req.status} request is held only for a revocation; claim it first.")


def move(session: Session, req: RecordsRequest, to: str, *, actor: str, audit_ctx: dict,
         org_id: str | None = None, reasons=(), note: str | None = None, hold_reason: str | None = None,
         **detail) -> None:
    """Change the status: check the edge, bump the version, and write event, audit entry and webhook together.

    Each status change writes exactly one timeline event carrying `previous` and one audit entry
    `request.<status>`; nothing else writes either.
    """
    allowed(req, to, hold_reason=hold_reason)
    previous = req.status
    req.status = to
    req.hold_reason = hold_reason if to == "on_hold" else None
    touch(req)
    extra = {key: value for key, value in detail.items() if value is not None}
    if reasons:
        extra["reasons"] = sorted(set(reasons))
    if note:
        extra["note"] = note
    if hold_reason:
        extra["hold_reason"] = hold_reason
    add_event(session, req, "status_changed", actor, previous=previous, **extra)
    record(session, actor=actor, org_id=org_id, action=f"request.{to}", object_type="request", object_id=req.id,
           **audit_ctx)
    data = {"status": to, "previous_status": previous,
            "occurred_at": req.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if extra.get("reasons"):
        data["reasons"] = extra["reasons"]
    notify(session, req, "request.status_changed", actor=actor, **data)


def fulfil(session: Session, req: RecordsRequest, *, actor: str, audit_ctx: dict, org_id: str | None = None,
           **detail) -> None:
    """Release the records: the request becomes fulfilled and its release documents reach the requester.

    Until this moment the tenant guard hides them from the requester; from it, the timeline names them and
    a `request.document_added` webhook announces each (ids only).  An invoice still due refuses the release
    (409 PAYMENT_REQUIRED); a request without an invoice is released at no charge.  The disclosure record is
    written here, so every release has exactly one.
    """
    releases = [d for d in req.documents if d.kind == "release" and d.scan_status == "clean"]
    if req.hold_reason == AUTH_REVOKED:
        raise RequestRevoked("The patient revoked this authorization: nothing may be released.")
    if RELEASED in EDGES.get(req.status, ()):  # otherwise `move` refuses the edge itself
        if invoice_due(session, req):
            raise PaymentRequired("The invoice for these records is due: record its payment first.")
        if not releases:
            raise Conflict("Upload the released records (kind `release`) before fulfilling.",
                           code="RELEASE_REQUIRED")
    move(session, req, RELEASED, actor=actor, audit_ctx=audit_ctx, org_id=org_id, **detail)
    disclosure = disclosures.record_disclosure(session, req, releases, actor=actor, audit_ctx=audit_ctx,
                                               org_id=org_id)
    add_event(session, req, "records_released", actor, documents=[d.id for d in releases],
              disclosure_id=disclosure.id)
    for document in releases:
        notify(session, req, "request.document_added", document_id=document.id, kind="release")


def invoice_of(session: Session, req: RecordsRequest) -> Invoice | None:
    """The request's invoice, if one was issued."""
    return session.scalars(select(Invoice).where(Invoice.request_id == req.id)).one_or_none()


def invoice_due(session: Session, req: RecordsRequest) -> bool:
    """Whether the request has an invoice still to be paid (then nothing is released)."""
    invoice = invoice_of(session, req)
    return invoice is not None and invoice.status == "due"


def audit_change(session: Session, req: RecordsRequest, action: str, *, actor: str, audit_ctx: dict,
                 org_id: str | None = None, object_type: str = "request", object_id: str | None = None) -> None:
    """The audit entry of a change that is not a status change (an edit, an assignment, a document)."""
    record(session, actor=actor, org_id=org_id, action=action, object_type=object_type,
           object_id=object_id or req.id, **audit_ctx)

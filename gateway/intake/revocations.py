"""A patient's written revocation halts work in flight (45 CFR 164.508(b)(5); API.md v1.1).

Recording one stores it and, in the same transaction, moves every open request
it covers — submitted, in review, routed, in progress, on hold, awaiting
payment — to `on_hold` with the reason AUTH_REVOKED, through the lifecycle
(event, audit entry and webhook each).  From there a request leaves only as
`returned` (a new authorization is needed) or `denied`; fulfilment and the
facility hand-over are refused.  Drafts are stopped by the AUTH_REVOKED rule
when they are submitted.  The answer names only the held requests the caller
may see: a clerk of one facility learns nothing about another facility's work.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from gateway.audit.service import record
from gateway.auth.principal import Principal
from gateway.auth.tenancy import get_visible, visibility
from gateway.db import Database
from gateway.errors import Forbidden
from gateway.intake import lifecycle, rules
from gateway.intake.models import Document, RecordsRequest, Revocation
from gateway.intake.service import body_of


def record_revocation(db: Database, *, principal: Principal, patient: dict, recipient: str, effective_on: date,
                      audit_ctx: dict, document_id: str | None = None) -> tuple[Revocation, list[str]]:
    """Store a revocation and hold every open request it covers; returns it and the held ids the caller may see."""
    if not principal.has_role("facility_staff"):
        raise Forbidden("Records staff record revocations.")
    if document_id is not None:  # the written revocation must be a document the clerk can see
        with db.sessions() as session:
            get_visible(session, principal, Document, document_id, db=db, audit_context=audit_ctx)
    with db.write_transaction() as session:
        # Lock every candidate first, in id order, and only then touch the audit trail: a request's change
        # takes its row lock before the audit chain's, so taking them in the other order could deadlock.
        dob = patient["date_of_birth"].isoformat()
        candidate_ids = sorted(session.scalars(select(RecordsRequest.id).where(
            RecordsRequest.status.in_(lifecycle.HOLDABLE),
            RecordsRequest.patient["date_of_birth"].as_string() == dob)))
        locked = list(lifecycle.lock_many(session, candidate_ids).values())  # in id order
        revocation = Revocation(
            patient_first_name=patient["first_name"], patient_last_name=patient["last_name"],
            patient_date_of_birth=patient["date_of_birth"], recipient=recipient, effective_on=effective_on,
            facility=next(iter(sorted(principal.facilities)), None), document_id=document_id,
            recorded_by=principal.audit_actor)
        session.add(revocation)
        session.flush()
        record(session, actor=principal.audit_actor, org_id=principal.org_id, action="revocation.create",
               object_type="revocation", object_id=revocation.id, **audit_ctx)
        held = []
        for req in locked:
            if req.status in lifecycle.HOLDABLE and covers(revocation, body_of(req)):
                hold(session, req, revocation, actor=principal.audit_actor, audit_ctx=audit_ctx)
                held.append(req.id)
        visible = set(session.scalars(select(RecordsRequest.id).where(
            RecordsRequest.id.in_(held), visibility(principal, RecordsRequest)))) if held else set()
        return revocation, [request_id for request_id in held if request_id in visible]


def hold(session, req: RecordsRequest, revocation: Revocation, *, actor: str, audit_ctx: dict) -> None:
    """Halt one request for the revocation (already on hold: the hold's reason becomes the revocation)."""
    if req.status == "on_hold":
        req.hold_reason = lifecycle.AUTH_REVOKED
        lifecycle.touch(req)
        lifecycle.add_event(session, req, "hold_reason_changed", actor, hold_reason=lifecycle.AUTH_REVOKED,
                            revocation_id=revocation.id)
        lifecycle.audit_change(session, req, "request.revocation_hold", actor=actor, audit_ctx=audit_ctx)
        lifecycle.notify(session, req, "request.status_changed", status=req.status, previous_status=req.status,
                         reasons=[lifecycle.AUTH_REVOKED])
        return
    lifecycle.move(session, req, "on_hold", actor=actor, audit_ctx=audit_ctx, hold_reason=lifecycle.AUTH_REVOKED,
                   reasons=[lifecycle.AUTH_REVOKED], revocation_id=revocation.id)


def covers(revocation: Revocation, body: dict) -> bool:
    """Whether the revocation covers this request's authorization (the AUTH_REVOKED rule's own test)."""
    found = rules.revoked_by((rules.Revocation(
        patient_first_name=revocation.patient_first_name, patient_last_name=revocation.patient_last_name,
        patient_date_of_birth=revocation.patient_date_of_birth, recipient=revocation.recipient,
        effective_on=revocation.effective_on),), body)
    return found is not None

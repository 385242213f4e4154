"""Submitting a request, and recording revocations.

Submit runs every rule at once: a request with any deficiency stays where it
is and the requester gets all of them in one 422 REQUEST_DEFICIENT.  A clean
request becomes `submitted` with its fee estimate and due date fixed, and its
routing decision and its outbox row are written in the same transaction (there
is no "routed" until the relay has put it on a queue).
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.audit.service import record
from gateway.auth.models import Organization
from gateway.auth.principal import Principal
from gateway.db import utcnow
from gateway.errors import Conflict, FieldError, Forbidden, Unprocessable
from gateway.intake import rules
from gateway.intake.assessment import assess_request
from gateway.intake.models import CLOSED_STATUSES, RecordsRequest, Revocation
from gateway.intake.service import add_event, body_of, transition
from gateway.routing import outbox
from gateway.routing.decide import RoutingDecision, decide_for
from gateway.webhooks.service import emit

SUBMITTABLE = ("draft", "returned")
ALREADY_SUBMITTED = ("submitted", "routed")


class RequestDeficient(Unprocessable):
    code, title = "REQUEST_DEFICIENT", "Request cannot be released as it stands"


def submit(session: Session, *, principal: Principal, req: RecordsRequest, on: date,
           audit_ctx: dict) -> RoutingDecision | None:
    """Submit a draft (or a returned request, fixed); None when it was already submitted (no-op)."""
    if not principal.is_requester:
        raise Forbidden("Only the requesting organization submits a request.")
    if req.status in ALREADY_SUBMITTED:
        return None
    if req.status not in SUBMITTABLE:
        raise Conflict(f"A {req.status} request cannot be submitted.", code="INVALID_TRANSITION")
    assessment = assess_request(session, req, on=on, submitted_on=on)
    if assessment.deficiencies:
        raise RequestDeficient(
            f"The request has {len(assessment.deficiencies)} problem(s) a records team would send back; "
            "see errors.", errors=[FieldError(**d) for d in assessment.deficiencies])
    org = session.get(Organization, req.org_id)
    decision = decide_for(req, org.kind)
    req.submitted_at, req.fee_estimate, req.due_on, req.deficiencies = utcnow(), assessment.fee_estimate, \
        assessment.due_on, []
    transition(session, req, "submitted", actor=principal.audit_actor, allowed_from=SUBMITTABLE,
               audit_ctx=audit_ctx, org_id=principal.org_id, due_on=str(assessment.due_on))
    add_event(session, req, "routing_decided", "gateway", queue=decision.queue, at_front=decision.at_front)
    outbox.add_routing(session, request_id=req.id, decision=decision)
    return decision


def record_revocation(session: Session, *, principal: Principal, patient: dict, recipient: str,
                      effective_on: date, audit_ctx: dict) -> tuple[Revocation, list[str]]:
    """Store a revocation and flag every open request it touches; returns it and their ids."""
    revocation = Revocation(
        patient_first_name=patient["first_name"], patient_last_name=patient["last_name"],
        patient_date_of_birth=patient["date_of_birth"], recipient=recipient, effective_on=effective_on,
        facility=next(iter(sorted(principal.facilities)), None), recorded_by=principal.audit_actor)
    session.add(revocation)
    session.flush()
    record(session, actor=principal.audit_actor, org_id=principal.org_id, action="revocation.create",
           object_type="revocation", object_id=revocation.id, **audit_ctx)
    touched = []
    candidates = session.scalars(select(RecordsRequest).where(
        RecordsRequest.status.not_in(CLOSED_STATUSES),
        RecordsRequest.patient["date_of_birth"].as_string() == revocation.patient_date_of_birth.isoformat()))
    for req in candidates:
        if _touches(revocation, body_of(req)):
            add_event(session, req, "revocation_flagged", principal.audit_actor, revocation_id=revocation.id)
            emit(session, org_id=req.org_id, event_type="request.revocation_flagged",
                 data={"request_id": req.id, "status": req.status})
            touched.append(req.id)
    return revocation, touched


def _touches(revocation: Revocation, body: dict) -> bool:
    """Whether the revocation covers this request's authorization (same rule as AUTH_REVOKED)."""
    patient, authorization = body.get("patient") or {}, body.get("authorization") or {}
    if patient.get("date_of_birth") != revocation.patient_date_of_birth:
        return False
    signed_on = authorization.get("signed_on")
    return (rules.names_match(patient.get("first_name") or "", revocation.patient_first_name)
            and rules.names_match(patient.get("last_name") or "", revocation.patient_last_name)
            and rules.names_match(authorization.get("recipient") or "", revocation.recipient)
            and (signed_on is None or signed_on <= revocation.effective_on))

"""What the rules say about a request: deficiencies, required documents, fee estimate, due date.

This module gathers the facts the pure rules need (facility policy, the
requester organization, the documents, revocations on file, today's date in
the facilities' calendar) and builds the request resource every read returns.
A draft is assessed live, so requesters see every problem before they submit;
from submission on, the fee estimate and due date are the ones fixed then.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.auth.models import Organization
from gateway.auth.principal import Principal
from gateway.facilities.service import facility_with_siblings
from gateway.intake import rules
from gateway.intake.access import document_visible_to
from gateway.intake.models import RecordsRequest, Revocation
from gateway.intake.release_models import Invoice
from gateway.intake.schemas import SECTIONS
from gateway.intake.service import body_of

LIVE_STATUSES = ("draft", "returned")


@lru_cache(maxsize=1)
def policy() -> rules.Policy:
    """The fee schedules and holidays from the packaged policy file (read once)."""
    return rules.load_policy()


@dataclass(frozen=True)
class Assessment:
    """Everything the rules conclude about one request body."""

    deficiencies: list[dict]
    required_documents: list[dict]
    fee_estimate: dict
    due_on: date | None
    # The clock that set due_on (None without a submission date).
    due_basis: rules.Deadline | None = None

    @property
    def valid(self) -> bool:
        """True when nothing stands in the way of release."""
        return not self.deficiencies


_MEMO = "gateway.assessment_memo"  # session.info: (transaction, {(what, key): value})


def _in_transaction(session: Session, what: str, key, read):
    """`read()`, remembered until the caller's transaction ends: a request assessed twice in one transaction
    (checked, then presented) reads its facts once, and no later transaction sees them."""
    transaction = session.get_transaction()
    if transaction is None:
        return read()
    memo = session.info.get(_MEMO)
    if memo is None or memo[0] is not transaction:
        memo = session.info[_MEMO] = (transaction, {})
    if (what, key) not in memo[1]:
        memo[1][(what, key)] = read()
    return memo[1][(what, key)]


def facility_policy(session: Session, code: str | None) -> rules.FacilityPolicy | None:
    """The rules' view of a facility row, or None for an unknown code.

    Read in the caller's transaction and kept for that transaction only: a check judges the catalogue as it is
    now (a cross-request cache measured at 2 % of a request's CPU kept a changed turnaround for 30 s, under a
    check)."""
    if not code:
        return None
    return _in_transaction(session, "facility", code, lambda: _read_facility_policy(session, code))


def _read_facility_policy(session: Session, code: str) -> rules.FacilityPolicy | None:
    facility, siblings = facility_with_siblings(session, code)
    if facility is None:
        return None
    system_names: tuple[str, ...] = ()
    affiliate_names: list[str] = []
    if facility.health_system:
        system_names = (facility.health_system, *(facility.health_system_aliases or ()))
        for sibling in siblings:
            affiliate_names += [sibling.name, *(sibling.aliases or ())]
    return rules.FacilityPolicy(
        code=facility.code, name=facility.name, aliases=tuple(facility.aliases or ()),
        turnaround_days=facility.turnaround_days, turnaround_business_days=facility.turnaround_business_days,
        requires_practice=facility.requires_practice,
        max_authorization_age_days=facility.max_authorization_age_days,
        system_names=system_names, affiliate_names=tuple(affiliate_names))


def revocations_for(session: Session, body: dict) -> tuple[rules.Revocation, ...]:
    """Revocations on file for a patient with this date of birth (names are matched by the rule)."""
    dob = (body.get("patient") or {}).get("date_of_birth")
    if not isinstance(dob, date):
        return ()
    return _in_transaction(session, "revocations", dob, lambda: _read_revocations(session, dob))


def _read_revocations(session: Session, dob: date) -> tuple[rules.Revocation, ...]:
    rows = session.scalars(select(Revocation).where(Revocation.patient_date_of_birth == dob))
    return tuple(rules.Revocation(patient_first_name=r.patient_first_name, patient_last_name=r.patient_last_name,
                                  patient_date_of_birth=r.patient_date_of_birth, recipient=r.recipient,
                                  effective_on=r.effective_on) for r in rows)


def context(session: Session, body: dict, *, org: Organization, documents, on: date) -> rules.RuleContext:
    """The facts the rules need for `body`, as of the date `on`."""
    return rules.RuleContext(
        today=on, facility=facility_policy(session, body.get("facility")), requester_org_name=org.name,
        requester_org_kind=org.kind,
        documents=tuple(rules.DocumentFacts(d.kind, d.scan_status, getattr(d, "reading_legible", None))
                        for d in documents),
        revocations=revocations_for(session, body), policy=policy())


def assess(session: Session, body: dict, *, org: Organization, documents=(), on: date,
           submitted_on: date | None = None) -> Assessment:
    """Run every rule over a body as of `on` (the clock's today); `submitted_on` gives the due date."""
    ctx = context(session, body, org=org, documents=documents, on=on)
    basis = rules.due_basis(body, ctx, submitted_on) if submitted_on else None
    return Assessment(
        deficiencies=[d.to_dict() for d in rules.check_request(body, ctx)],
        required_documents=rules.required_documents(body, ctx),
        fee_estimate=rules.fee_estimate(body, ctx),
        due_on=basis.due_on if basis else None, due_basis=basis)


def assess_request(session: Session, req: RecordsRequest, *, on: date, submitted_on: date | None = None,
                   body: dict | None = None, org: Organization | None = None) -> Assessment:
    """Assess a stored request with its documents (`body`: its `body_of`, `org`: its organization, when the
    caller has them already; the session's identity map holds rows weakly, so a row read here and dropped is
    read again by the next `session.get`)."""
    org = org or session.get(Organization, req.org_id)
    return assess(session, body_of(req) if body is None else body, org=org, documents=req.documents, on=on,
                  submitted_on=submitted_on)


def resource(session: Session, req: RecordsRequest, *, on: date, viewer: Principal | None) -> dict:
    """The request resource (API.md "The request resource") as `viewer` may see it, assessed as of `on`.

    `viewer` None is the gateway itself handing the request to its facility (every document).
    """
    body = body_of(req)
    if req.status in LIVE_STATUSES:
        live = assess_request(session, req, on=on, body=body)
        deficiencies, fee, due = live.deficiencies, live.fee_estimate, req.due_on
        required = live.required_documents
    else:
        deficiencies, fee, due = req.deficiencies or [], req.fee_estimate, req.due_on
        org = session.get(Organization, req.org_id)
        required = rules.required_documents(body, context(session, body, org=org, documents=req.documents, on=on))
    return {
        **{section: body.get(section) for section in SECTIONS},
        "id": req.id, "reference": req.reference, "status": req.status, "facility": req.facility,
        "pathway": req.pathway, "purpose": req.purpose, "public_benefit_claim": req.public_benefit_claim,
        "fee_waiver_requested": req.fee_waiver_requested, "instructions": req.instructions,
        "documents": [d for d in req.documents if viewer is None or document_visible_to(viewer, req, d)],
        "required_documents": required, "deficiencies": deficiencies, "version": req.version,
        "hold_reason": req.hold_reason,
        # Which clerk works it is the records team's business.
        "assigned_to": None if viewer is not None and viewer.is_requester else req.assigned_to,
        "routing": {"queue": req.routing_queue, "routed_at": req.routed_at} if req.routing_queue else None,
        "fee_estimate": fee, "due_on": due, **due_date_facts(req), "invoice": invoice_resource(session, req),
        "created_at": req.created_at, "updated_at": req.updated_at, "submitted_at": req.submitted_at,
    }


def invoice_resource(session: Session, req: RecordsRequest) -> dict | None:
    """The request's invoice as the resource shows it (None before one is issued)."""
    if req.submitted_at is None:  # invoices are issued in progress, so a never-submitted request has none
        return None
    invoice = session.scalars(select(Invoice).where(Invoice.request_id == req.id)).one_or_none()
    return invoice.to_resource() if invoice is not None else None


def due_date_facts(req: RecordsRequest) -> dict:
    """Which clock set the due date, and its one extension (RULES.md §9), as the resource shows them."""
    extension = None
    if req.due_extended_at is not None:
        extension = {"extended_at": req.due_extended_at, "reason": req.due_extension_reason,
                     "days": rules.HIPAA_EXTENSION_DAYS}
    return {"due_basis": req.due_basis, "due_rule": req.due_rule, "due_extension": extension}


def due_clock(session: Session, req: RecordsRequest, *, timezone) -> rules.Deadline | None:
    """Which clock set the request's due date (RULES.md §9), recomputed from the day of its first submission.

    None when no clock gives that date any more (the facility's policy or the body changed since).
    """
    if req.due_on is None or req.submitted_at is None:
        return None
    from gateway.intake.rules.clocks import deadlines

    body = body_of(req)
    submitted_on = req.submitted_at.astimezone(timezone).date()
    ctx = context(session, body, org=session.get(Organization, req.org_id), documents=req.documents,
                  on=submitted_on)
    # deadlines() lists the stricter sources first, as due_basis breaks a tie.
    return next((d for d in deadlines(body, ctx, submitted_on) if d.due_on == req.due_on), None)

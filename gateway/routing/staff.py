"""The records-staff workflow: claim, assign, and status transitions with reasons (the queue: `routing.queue`).

    routed ──claim──▶ in_progress ──▶ fulfilled (a clean `release` document; no invoice due)
       │    ◀─unclaim─   │  ▲  └─────▶ returned | denied (need reason codes)
       │                 ▼  │
       │               on_hold ──────▶ returned | denied
       └─(review queue)─ "routed" ─▶ the next queue on the request's route (sensitive review, then the facility)
    in_progress ──invoice──▶ awaiting_payment ──payment──▶ fulfilled       (gateway.intake.invoices)

Every change goes through the lifecycle under the request's row lock, so two
clerks claiming at once cannot both win, and a claim racing a cancel leaves
one of them refused.  A request in `legal-review` or `sensitive-review` is
worked by the facility's staff as reviewers; passing it on writes an outbox
row for the next queue on its route, so the hand-over is as reliable as the
first routing.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import outbox
from gateway.auth.models import Organization, User
from gateway.auth.principal import Principal
from gateway.db import Database, utcnow
from gateway.errors import Conflict, FieldError, Forbidden, Unprocessable
from gateway.intake import lifecycle, rules
from gateway.intake.models import RecordsRequest
from gateway.intake.routing_policy import REVIEW_QUEUES, facility_queue, route_for

REASONS = ("UNREADABLE", "INCOMPLETE", "PATIENT_NOT_FOUND", "NO_RECORDS_FOUND", "NEEDS_PHYSICIAN_APPROVAL",
           "AUTHORIZATION_INVALID", "OTHER")
TARGETS = ("on_hold", "in_progress", "fulfilled", "returned", "denied", "routed")
# The moves staff offer from each status (the lifecycle decides the rest: revocation holds, payment).
TRANSITIONS = {
    "routed": ("in_progress", "returned", "denied", "routed"),
    "in_progress": ("on_hold", "fulfilled", "returned", "denied", "routed"),
    "on_hold": ("in_progress", "returned", "denied"),
    "awaiting_payment": ("fulfilled",),  # once paid (the lifecycle refuses it while the invoice is due)
}
NEEDS_REASONS = ("returned", "denied")
# Where a due date is still running (a returned request waits for its requester; a closed one is done).
CLOCK_RUNNING = ("submitted", "routed", "in_progress", "on_hold", "awaiting_payment")


def require_staff_of(principal: Principal, facility: str) -> None:
    """Only records staff bound to this facility work its queue."""
    if not principal.has_role("facility_staff") or facility not in principal.facilities:
        raise Forbidden("Only records staff of this facility work its queue.")


def claim(db: Database, *, principal: Principal, request_id: str, audit_ctx: dict,
          if_match: str | None = None) -> None:
    """Take a routed request: it becomes in_progress, assigned to the caller (claiming it again is a no-op)."""
    with lifecycle.locked_request(db, principal, request_id, audit_ctx=audit_ctx, if_match=if_match) as (session, req):
        require_staff_of(principal, req.facility)
        if req.status == "in_progress" and req.assigned_to == principal.audit_actor:
            return
        if req.status == "in_progress":
            raise lifecycle.InvalidTransition("Another clerk is working this request.")
        req.assigned_to = principal.audit_actor
        lifecycle.move(session, req, "in_progress", actor=principal.audit_actor, audit_ctx=audit_ctx,
                       assigned_to=principal.audit_actor)


def assign(db: Database, *, principal: Principal, request_id: str, user_id: str, audit_ctx: dict,
           if_match: str | None = None) -> None:
    """Hand a request to a colleague of the same facility (a routed one becomes in progress, theirs)."""
    with lifecycle.locked_request(db, principal, request_id, audit_ctx=audit_ctx, if_match=if_match) as (session, req):
        require_staff_of(principal, req.facility)
        colleague = session.get(User, user_id)
        if colleague is None or not colleague.active or "facility_staff" not in (colleague.roles or []) \
                or req.facility not in (colleague.facilities or []):
            raise Unprocessable("Assign the request to an active records clerk of its facility.",
                                code="VALIDATION_FAILED",
                                errors=[FieldError("INVALID_FIELD", "user_id", "not a clerk of this facility")])
        actor = f"user:{colleague.id}"
        if req.status == "routed":
            req.assigned_to = actor
            lifecycle.move(session, req, "in_progress", actor=principal.audit_actor, audit_ctx=audit_ctx,
                           assigned_to=actor)
            return
        if req.status not in ("in_progress", "on_hold", "awaiting_payment"):
            raise lifecycle.InvalidTransition(f"A {req.status} request is not being worked; nothing to assign.")
        if req.assigned_to == actor:
            return
        previous, req.assigned_to = req.assigned_to, actor
        lifecycle.touch(req)
        lifecycle.add_event(session, req, "assigned", principal.audit_actor, assigned_to=actor,
                            previous_assignee=previous)
        lifecycle.audit_change(session, req, "request.assign", actor=principal.audit_actor, audit_ctx=audit_ctx)


def change_status(db: Database, *, principal: Principal, request_id: str, to: str, reasons: list[str],
                  note: str | None, audit_ctx: dict, if_match: str | None = None) -> None:
    """Apply a staff transition, with reason codes where the status needs them."""
    unknown = sorted(set(reasons) - set(REASONS))
    if unknown:
        raise Unprocessable("Unknown reason codes.",
                            errors=[FieldError("INVALID_FIELD", "reasons", ", ".join(unknown))])
    if to in NEEDS_REASONS and not reasons:
        raise Unprocessable(f"Say why the request is {to}: give at least one reason code.", code="REASONS_REQUIRED",
                            errors=[FieldError("REASONS_REQUIRED", "reasons", "at least one reason code")])
    with lifecycle.locked_request(db, principal, request_id, audit_ctx=audit_ctx, if_match=if_match) as (session, req):
        require_staff_of(principal, req.facility)
        if to == "routed":
            _pass_on(session, principal=principal, req=req, audit_ctx=audit_ctx)
        elif to == "fulfilled":
            lifecycle.fulfil(session, req, actor=principal.audit_actor, audit_ctx=audit_ctx, note=note)
        else:
            if to not in TRANSITIONS.get(req.status, ()) and req.hold_reason != lifecycle.AUTH_REVOKED:
                raise lifecycle.InvalidTransition(f"A {req.status} request cannot become {to}.")
            lifecycle.move(session, req, to, actor=principal.audit_actor, audit_ctx=audit_ctx, reasons=reasons,
                           note=note)
            if to == "in_progress":
                req.assigned_to = req.assigned_to or principal.audit_actor
            elif to in ("returned", "denied"):
                req.assigned_to = None


def _pass_on(session: Session, *, principal: Principal, req: RecordsRequest, audit_ctx: dict) -> None:
    """`routed`: a reviewer passes the request to the next queue on its route; anyone else unclaims it."""
    next_queue = None
    if req.routing_queue in REVIEW_QUEUES:
        org = session.get(Organization, req.org_id)
        next_queue = route_for(req, org.kind).after(req.routing_queue) or facility_queue(req.facility)
    elif req.status != "in_progress":
        raise lifecycle.InvalidTransition("Only requests in a review queue are passed on; a routed request in the "
                                          "facility queue is already there.")
    if req.status == "routed":
        lifecycle.touch(req)  # routed → routed: a new queue, the same status
    else:
        lifecycle.move(session, req, "routed", actor=principal.audit_actor, audit_ctx=audit_ctx,
                       unclaimed=req.assigned_to)
    req.assigned_to = None
    if next_queue is None:
        return  # unclaimed: back in the facility queue for any clerk
    review = req.routing_queue
    req.routing_queue = next_queue  # at once, so a second pass-on moves it further, never twice to one queue
    lifecycle.add_event(session, req, "review_passed", principal.audit_actor, review=review, next_queue=next_queue)
    lifecycle.audit_change(session, req, "request.review_passed", actor=principal.audit_actor, audit_ctx=audit_ctx)
    outbox.add_route(session, request_id=req.id, queue=next_queue)


def assignable_colleagues(session: Session, facility: str) -> list[User]:
    """Active clerks of a facility, by e-mail address, for the portal's reassign controls."""
    # Staff belong to no organization: that keeps every requester's user out of the Python filter.
    users = session.scalars(select(User).where(User.active.is_(True), User.org_id.is_(None))
                            .order_by(User.email)).all()
    return [u for u in users if "facility_staff" in (u.roles or []) and facility in (u.facilities or [])]


def extend_due_date(db: Database, *, principal: Principal, request_id: str, reason: str, audit_ctx: dict,
                    if_match: str | None = None) -> None:
    """Extend HIPAA's 30-day access clock once, by 30 days, with a written reason (45 CFR 164.524(b)(2)(iii)).

    Only for a request whose due date that clock set, while it runs; a second extension is 409
    ALREADY_EXTENDED.  The reason is kept on the request and its timeline for the requester to read; the
    requester is told by webhook and e-mail (the new date only, never the reason).
    """
    with lifecycle.locked_request(db, principal, request_id, audit_ctx=audit_ctx, if_match=if_match) as (session, req):
        require_staff_of(principal, req.facility)
        if req.due_extended_at is not None:
            raise Conflict("The HIPAA access clock can be extended only once, and this request's was.",
                           code="ALREADY_EXTENDED")
        if req.due_basis != rules.EXTENDABLE_BASIS or req.due_on is None:
            raise Conflict("Only a due date set by HIPAA's 30-day access clock can be extended.",
                           code="DUE_DATE_NOT_EXTENDABLE")
        if req.status not in CLOCK_RUNNING:
            raise Conflict(f"A {req.status} request has no running clock to extend.", code="DUE_DATE_NOT_EXTENDABLE")
        previous = req.due_on
        req.due_on = rules.extend_access_clock(previous)
        req.due_extended_at, req.due_extension_reason = utcnow(), reason
        lifecycle.touch(req)
        lifecycle.add_event(session, req, "due_date_extended", principal.audit_actor, previous_due_on=str(previous),
                            due_on=str(req.due_on), note=reason)
        lifecycle.audit_change(session, req, "request.due_date_extended", actor=principal.audit_actor,
                               audit_ctx=audit_ctx)
        lifecycle.notify(session, req, "request.due_date_extended", actor=principal.audit_actor,
                         due_on=str(req.due_on), previous_due_on=str(previous))


def assignee_email(session: Session, actor: str | None) -> str | None:
    """The e-mail address of the clerk an `assigned_to` (`user:<id>`) names, for colleagues to read."""
    if not actor or not actor.startswith("user:"):
        return None
    user = session.get(User, actor.removeprefix("user:"))
    return user.email if user is not None else None


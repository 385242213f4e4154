"""Bulk submission: store a batch, then create each item as a draft exactly as `POST /v1/requests` would.

`create_batch` stores the items sealed (they hold patient data) and audits the
batch; the view then enqueues `gateway.batches.jobs.process_batch(batch_id)` —
the job carries the id only.  `process` validates and creates the items in
chunks of CHUNK, one transaction each, through intake's own `create_request`
(the API's create: the same checks, timeline event, audit entry and
reference rule).  Each chunk locks the batch row, resumes at `processed` and
writes every item's outcome with the drafts it created, so a job retried after
a crash, or run twice at once, creates every item exactly once.  Chunks keep a
1,000-item batch to ten commits while never holding the audit chain's head
(every audit append locks it) for long.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import and_, false, func, select
from sqlalchemy.orm import Session

from gateway.audit.service import record
from gateway.auth.principal import Principal
from gateway.auth.tenancy import get_visible, tenant_rule, visibility, visible_select
from gateway.crypto import seal, unseal
from gateway.db import Database, utcnow
from gateway.errors import BadRequest, FieldError, GatewayError, PayloadTooLarge, Unprocessable
from gateway.intake import service as intake
from gateway.intake.models import RecordsRequest

from .models import Batch, BatchItem

MAX_ITEMS = 1000
CHUNK = 100
SEAL_PURPOSE = "batch-items"
JOB = "gateway.batches.jobs.process_batch"


class BatchTooLarge(PayloadTooLarge):
    code, title = "BATCH_TOO_LARGE", "Batch too large"


@tenant_rule(Batch)
def _batches(principal: Principal):
    if principal.is_requester and principal.org_id:
        return Batch.org_id == principal.org_id
    return false()


def check_items(data) -> list[dict]:
    """The items of a batch body `{"requests": [...]}`: 1 to MAX_ITEMS objects (each judged later, on its own).

    400 BODY_NOT_JSON / BATCH_EMPTY, 413 BATCH_TOO_LARGE, 422 for a wrong shape (an item that is not an object
    is not a create body at all, so the batch is refused rather than the item reported).
    """
    if not isinstance(data, dict):
        raise BadRequest("The body must be a JSON object with a `requests` array.", code="BODY_NOT_JSON")
    unknown = sorted(set(data) - {"requests"})
    if unknown:
        raise Unprocessable("The body has invalid fields; see errors.",
                            errors=[FieldError("UNKNOWN_FIELD", name[:100], "Unknown field.") for name in unknown[:20]])
    items = data.get("requests")
    if not isinstance(items, list):
        raise Unprocessable("The body has invalid fields; see errors.",
                            errors=[FieldError("FIELD_REQUIRED" if items is None else "INVALID_FIELD", "requests",
                                               "An array of create bodies is required.")])
    if not items:
        raise BadRequest("A batch holds at least one request.", code="BATCH_EMPTY")
    if len(items) > MAX_ITEMS:
        raise BatchTooLarge(f"A batch holds at most {MAX_ITEMS:,} requests; this one has {len(items):,}. "
                            "Send it in several batches.")
    wrong = [index for index, item in enumerate(items) if not isinstance(item, dict)]
    if wrong:
        raise Unprocessable("Every item must be a create body (a JSON object); see errors.",
                            errors=[FieldError("INVALID_FIELD", f"requests.{i}", "Not an object.") for i in wrong[:50]])
    return items


def principal_record(principal: Principal) -> dict:
    """What the job needs to act for the caller (no credential)."""
    return {"kind": principal.kind, "id": principal.id, "org_id": principal.org_id, "org_kind": principal.org_kind,
            "roles": sorted(principal.roles)}


def principal_of(batch: Batch) -> Principal:
    """The caller the batch was sent by, as the job acts for it."""
    p = batch.principal
    return Principal(kind=p["kind"], id=p["id"], org_id=p["org_id"], org_kind=p.get("org_kind"),
                     roles=frozenset(p["roles"]))


def create_batch(db: Database, *, principal: Principal, items: list[dict], secret_key: str, audit_ctx: dict) -> str:
    """Store a checked batch (items sealed) and audit it; returns its id.  The caller enqueues the job."""
    if not principal.is_requester or not principal.org_id:
        from gateway.errors import Forbidden

        raise Forbidden("Only requester organizations create requests.")
    sealed = seal(secret_key, json.dumps(items, separators=(",", ":")), purpose=SEAL_PURPOSE)
    with db.transaction() as session:
        batch = Batch(org_id=principal.org_id, created_by=principal.audit_actor, principal=principal_record(principal),
                      audit_ctx=dict(audit_ctx), status="processing", total=len(items), processed=0,
                      created_count=0, rejected_count=0, items_sealed=sealed)
        session.add(batch)
        session.flush()
        record(session, actor=principal.audit_actor, org_id=principal.org_id, action="batch.create",
               object_type="batch", object_id=batch.id, **audit_ctx)
        return batch.id


def forget_batch(db: Database, batch_id: str) -> None:
    """Remove a batch whose job could not be enqueued (the caller answers 503; nothing was created)."""
    with db.transaction() as session:
        batch = session.get(Batch, batch_id)
        if batch is not None and batch.processed == 0:
            session.delete(batch)


def get_batch(session: Session, principal: Principal, batch_id: str, *, db: Database, audit_ctx: dict) -> Batch:
    """A batch the principal may see, or NotFound (another organization's looks missing)."""
    return get_visible(session, principal, Batch, batch_id, db=db, audit_context=audit_ctx)


def read(session: Session, batch_id: str) -> Batch:
    """A batch by id, for the view that just created it (no tenancy question: it is the caller's own)."""
    return session.get(Batch, batch_id)


def resource(session: Session, batch: Batch) -> dict:
    """The batch as the API shows it: status, counts and the outcome of every item handled so far."""
    rows = session.execute(select(BatchItem.index, BatchItem.request_id, BatchItem.errors)
                           .where(BatchItem.batch_id == batch.id).order_by(BatchItem.index)).all()
    return {"id": batch.id, "status": batch.status, "total": batch.total, "created_at": batch.created_at,
            "counts": {"created": batch.created_count, "rejected": batch.rejected_count},
            "items": [{"index": i, "request_id": r, "errors": e or []} for i, r, e in rows]}


def list_batches(session: Session, principal: Principal, *, limit: int = 10) -> list[Batch]:
    """The organization's latest batches, newest first."""
    return list(session.scalars(visible_select(principal, Batch).order_by(Batch.created_at.desc(), Batch.id)
                                .limit(limit)))


def items_of(session: Session, principal: Principal, batch: Batch) -> list[tuple[BatchItem, RecordsRequest | None]]:
    """Every handled item with its draft (as the principal may see it now), by index."""
    seen = and_(RecordsRequest.id == BatchItem.request_id, visibility(principal, RecordsRequest))
    rows = session.execute(select(BatchItem, RecordsRequest).outerjoin(RecordsRequest, seen)
                           .where(BatchItem.batch_id == batch.id).order_by(BatchItem.index)).all()
    return [(item, req) for item, req in rows]


@dataclass
class Outcome:
    """What one run of `process` did."""

    created: int = 0
    rejected: int = 0
    skipped: bool = False


def process(db: Database, *, batch_id: str, secret_key: str, chunk: int = CHUNK) -> Outcome:
    """Create the batch's items, chunk by chunk, resuming where an earlier run stopped (see the module doc)."""
    outcome = Outcome()
    with db.transaction() as session:
        batch = session.get(Batch, batch_id)
        if batch is None or batch.status == "done" or batch.items_sealed is None:
            return Outcome(skipped=True)
        items = json.loads(unseal(secret_key, batch.items_sealed, purpose=SEAL_PURPOSE))
    while True:
        with db.write_transaction() as session:
            batch = session.scalars(select(Batch).where(Batch.id == batch_id).with_for_update()).one_or_none()
            if batch is None or batch.status == "done":
                return outcome
            start = batch.processed
            principal, audit_ctx = principal_of(batch), dict(batch.audit_ctx or {})
            for index in range(start, min(start + chunk, batch.total)):
                request_id, errors = _create_item(session, db, batch, principal, items[index], audit_ctx)
                reference = items[index].get("reference")
                session.add(BatchItem(batch_id=batch.id, index=index, request_id=request_id,
                                      reference=reference[:100] if isinstance(reference, str) else None,
                                      errors=[e.to_dict() for e in errors]))
                if request_id:
                    batch.created_count += 1
                    outcome.created += 1
                else:
                    batch.rejected_count += 1
                    outcome.rejected += 1
                batch.processed = index + 1
            if batch.processed >= batch.total:
                batch.status, batch.finished_at, batch.items_sealed = "done", utcnow(), None
                return outcome


def _create_item(session: Session, db: Database, batch: Batch, principal: Principal, item,
                 audit_ctx: dict) -> tuple[str | None, list[FieldError]]:
    """One item through intake's create: (request id, []) or (None, why not)."""
    try:
        body = intake.load_create_body(item)
    except GatewayError as invalid:
        return None, invalid.errors or [FieldError(invalid.code, None, invalid.detail)]
    try:
        return intake.create_request(db, principal=principal, body=body, audit_ctx=audit_ctx, session=session), []
    except GatewayError as refused:
        if refused.status >= 500:  # an outage (the audit trail, the database): the job fails and is retried
            raise
        if refused.code == "DUPLICATE_REFERENCE":
            earlier = _earlier_item_with(session, batch.id, body["reference"])
            message = (f"Item {earlier} of this batch has the same reference." if earlier is not None
                       else "You already have an open request with this reference.")
            return None, [FieldError("DUPLICATE_REFERENCE", "reference", message)]
        return None, refused.errors or [FieldError(refused.code, None, refused.detail)]


def _earlier_item_with(session: Session, batch_id: str, reference: str) -> int | None:
    query = (select(func.min(BatchItem.index)).join(RecordsRequest, RecordsRequest.id == BatchItem.request_id)
             .where(BatchItem.batch_id == batch_id, RecordsRequest.reference == reference))
    return session.scalar(query)

"""Bulk submission: store a batch, then create each item as a draft exactly as `POST /v1/requests` would.

`create_batch` stores the items sealed (they hold patient data) and audits the
batch; the view then enqueues `gateway.batches.jobs.process_batch(batch_id)` —
the job carries the id only.  `process` validates and creates the items in
chunks of CHUNK, one transaction each, through intake's own create: each item
is validated by `load_create_body` and added by `create_requests` (the row,
timeline event, audit entry and reference rule of `POST /v1/requests`, in a
few statements per chunk instead of a round trip per item).  Each chunk locks
the batch row, resumes at `processed` and writes every item's outcome with the
drafts it created, so a job retried after a crash, or run twice at once,
creates every item exactly once.  Chunks keep a 1,000-item batch to ten
commits while never holding the audit chain's head (every audit append locks
it) for long.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from sqlalchemy import and_, false, select
from sqlalchemy.orm import Session

from gateway.audit.service import record
from gateway.auth.principal import Principal
from gateway.auth.tenancy import get_visible, tenant_rule, visibility, visible_select
from gateway.crypto import seal, unseal
from gateway.db import Database, utcnow
from gateway.errors import BadRequest, FieldError, Forbidden, GatewayError, PayloadTooLarge, Unprocessable
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


def process(db: Database, *, batch_id: str, secret_key: str, chunk: int = CHUNK,
            until: float | None = None) -> Outcome:
    """Create the batch's items, chunk by chunk, resuming where an earlier run stopped (see the module doc).

    `until` (a time.monotonic() value) stops after the chunk that passes it: the portal's request handles
    what fits in its time and leaves the rest to the job.
    """
    with db.transaction() as session:
        batch = session.get(Batch, batch_id)
        if batch is None or batch.status == "done" or batch.items_sealed is None:
            return Outcome(skipped=True)
        items = json.loads(unseal(secret_key, batch.items_sealed, purpose=SEAL_PURPOSE))
    outcome = Outcome()
    while True:
        with db.write_transaction() as session:
            batch = session.scalars(select(Batch).where(Batch.id == batch_id).with_for_update()).one_or_none()
            if batch is None or batch.status == "done":
                return outcome
            indexes = range(batch.processed, min(batch.processed + chunk, batch.total))
            results = _create_chunk(session, batch, [items[i] for i in indexes], first_index=indexes.start)
            created = sum(1 for request_id, _errors in results if request_id)
            session.add_all([BatchItem(batch_id=batch.id, index=index, request_id=request_id,
                                       reference=_reference_of(items[index]), errors=[e.to_dict() for e in errors])
                             for index, (request_id, errors) in zip(indexes, results, strict=True)])
            batch.created_count += created
            batch.rejected_count += len(results) - created
            batch.processed = indexes.stop
            outcome.created += created
            outcome.rejected += len(results) - created
            if batch.processed >= batch.total:
                batch.status, batch.finished_at, batch.items_sealed = "done", utcnow(), None
                return outcome
        if until is not None and time.monotonic() >= until:
            return outcome


def _reference_of(item: dict) -> str | None:
    reference = item.get("reference")
    return reference[:100] if isinstance(reference, str) else None


def _create_chunk(session: Session, batch: Batch, chunk: list[dict], *,
                  first_index: int) -> list[tuple[str | None, list[FieldError]]]:
    """Validate a chunk's items, create the valid ones through intake's create, and say what became of each."""
    results: list[tuple[str | None, list[FieldError]]] = []
    bodies: dict[int, dict] = {}
    for offset, item in enumerate(chunk):
        try:
            bodies[offset] = intake.load_create_body(item)
            results.append((None, []))
        except GatewayError as invalid:
            results.append((None, invalid.errors or [FieldError(invalid.code, None, invalid.detail)]))
    if not bodies:
        return results
    principal = principal_of(batch)
    ids = intake.create_requests(session, principal=principal, bodies=list(bodies.values()),
                                 audit_ctx=dict(batch.audit_ctx or {}))
    earlier = _created_references(session, batch.id)
    for (offset, body), request_id in zip(bodies.items(), ids, strict=True):
        if request_id:
            results[offset] = (request_id, [])
            earlier.setdefault(body["reference"], first_index + offset)
            continue
        first = earlier.get(body["reference"])
        message = (f"Item {first} of this batch has the same reference." if first is not None
                   else "You already have an open request with this reference.")
        results[offset] = (None, [FieldError("DUPLICATE_REFERENCE", "reference", message)])
    return results


def _created_references(session: Session, batch_id: str) -> dict[str, int]:
    """The references the batch's earlier chunks created, with the index of each."""
    rows = session.execute(select(BatchItem.reference, BatchItem.index).where(
        BatchItem.batch_id == batch_id, BatchItem.request_id.is_not(None)))
    return {reference: index for reference, index in rows if reference is not None}

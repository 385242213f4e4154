"""Several facilities in one request (API.md v1.1): a request group and its documents.

`POST /v1/requests` with `"facilities": [...]` creates one draft per facility,
all from the same body and sharing its reference, in one transaction under a
`RequestGroup`.  From then on each request is an ordinary request — checked,
routed, priced and fulfilled on its own through the lifecycle — and the group
only remembers which requests were filed together.

A document uploaded to the group is scanned and stored once (one S3 object)
and becomes a document of each of the group's requests that is still the
requester's to change (draft or returned): one `Document` row per request,
all naming the same storage key, each with its own timeline event and audit
entry, written in one transaction that locks those requests.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from gateway.audit.service import record
from gateway.auth.principal import Principal
from gateway.auth.tenancy import get_visible, visible_select
from gateway.db import Database, utcnow
from gateway.errors import Conflict
from gateway.intake import lifecycle, service
from gateway.intake.documents import REQUESTER_EDITABLE, DocumentUpload, check_kind
from gateway.intake.models import Document, RecordsRequest, RejectedUpload, RequestGroup
from gateway.storage import sanitise_filename


def create_group(db: Database, *, principal: Principal, body: dict, audit_ctx: dict) -> tuple[str, list[str]]:
    """One draft per facility of `body["facilities"]`, under a new group, in one transaction.

    Returns (group id, request ids in the order the facilities were given).  Any facility with an open
    request under this reference makes the whole create a 409 DUPLICATE_REFERENCE: nothing is stored.
    """
    service.require_requester(principal)
    common = {name: value for name, value in body.items() if name != "facilities"}
    with db.transaction() as session:
        group = RequestGroup(org_id=principal.org_id, reference=body["reference"], created_by=principal.audit_actor)
        session.add(group)
        session.flush()
        ids = [service.add_request(session, principal=principal, body={**common, "facility": code},
                                   audit_ctx=audit_ctx, group_id=group.id).id
               for code in body["facilities"]]
        record(session, actor=principal.audit_actor, org_id=principal.org_id, action="request_group.create",
               object_type="request_group", object_id=group.id, **audit_ctx)
        return group.id, ids


def get_group(session: Session, principal: Principal, group_id: str, *, db: Database,
              audit_ctx: dict) -> tuple[RequestGroup, list[RecordsRequest]]:
    """A group the principal may see and its requests (facility order); another tenant's is the same 404."""
    group = get_visible(session, principal, RequestGroup, group_id, db=db, audit_context=audit_ctx)
    return group, group_requests(session, principal, group.id)


def group_requests(session: Session, principal: Principal, group_id: str) -> list[RecordsRequest]:
    """The group's requests the principal may see, in facility order."""
    return list(session.scalars(visible_select(principal, RecordsRequest)
                                .where(RecordsRequest.group_id == group_id)
                                .order_by(RecordsRequest.facility, RecordsRequest.id)))


def _open_targets(session: Session, principal: Principal, group_id: str, kind: str) -> list[RecordsRequest]:
    """The group's requests a document of `kind` goes to now: the ones still the requester's to change."""
    targets = [req for req in group_requests(session, principal, group_id) if req.status in REQUESTER_EDITABLE]
    if not targets:
        raise Conflict("No request of this group is a draft or returned: documents cannot be added now.",
                       code="REQUEST_NOT_EDITABLE")
    for req in targets:
        check_kind(principal, req, kind)
    return targets


@dataclass
class GroupDocumentUpload(DocumentUpload):
    """`DocumentUpload` for a group: `request_id` is the group's id, and `accept` returns one document per
    request it went to.  The bytes stream, are scanned and are stored once, exactly as for one request."""

    def admit(self) -> None:
        """Before the form names a kind: is the group there for this caller, with a request open to uploads?"""
        self.check("supporting")

    def check(self, kind: str | None) -> str:
        """Refuse a kind the caller may not add to the group's open requests (before any byte is read)."""
        with self.db.sessions() as session:
            get_visible(session, self.principal, RequestGroup, self.request_id, db=self.db,
                        audit_context=self.audit_ctx)
            _open_targets(session, self.principal, self.request_id, kind)
            return kind

    def _record(self, kind: str, pages: int | None) -> list[Document]:
        ingested, principal = self.ingested, self.principal
        with self.db.write_transaction() as session:
            # Lock the group's requests in a fixed order (deadlock-free), then judge them as they are now.
            lifecycle.lock_many(session, (req.id for req in group_requests(session, principal, self.request_id)))
            session.expire_all()
            targets = _open_targets(session, principal, self.request_id, kind)
            verdict, filename, now = ingested.verdict, sanitise_filename(self.filename or ""), utcnow()
            recorded = []
            for req in targets:
                document = Document(
                    request_id=req.id, kind=kind, filename=filename, content_type=ingested.content_type,
                    size=ingested.size, sha256=ingested.sha256, pages=pages, storage_key=ingested.storage_key,
                    scan_status="clean", scan_engine=verdict.engine, scan_signature_version=verdict.signature_version,
                    scanned_at=verdict.scanned_at, uploaded_at=now, uploaded_by=principal.audit_actor)
                session.add(document)
                session.flush()
                record(session, actor=principal.audit_actor, org_id=principal.org_id, action="document.upload",
                       object_type="document", object_id=document.id, **self.audit_ctx)
                lifecycle.add_event(session, req, "document_added", principal.audit_actor, document_id=document.id,
                                    kind=kind, group_id=self.request_id)
                lifecycle.touch(req)
                recorded.append(document)
            return recorded

    def _record_malware(self, kind: str) -> None:
        """The evidence of a malware upload, on each open request of the group (never the file), audited."""
        ingested, principal = self.ingested, self.principal
        with self.db.write_transaction() as session:
            for req in group_requests(session, principal, self.request_id):
                if req.status not in REQUESTER_EDITABLE:
                    continue
                rejected = RejectedUpload(request_id=req.id, kind=kind, sha256=ingested.sha256, size=ingested.size,
                                          signature=(ingested.verdict.signature or "unknown")[:200],
                                          uploaded_by=principal.audit_actor)
                session.add(rejected)
                session.flush()
                record(session, actor=principal.audit_actor, org_id=principal.org_id, action="document.upload",
                       result="blocked", object_type="rejected_upload", object_id=rejected.id, **self.audit_ctx)
                lifecycle.add_event(session, req, "upload_blocked", principal.audit_actor, kind=kind,
                                    reason="malware")


"""Tasks: create (rules, upload pipeline, submit), read and search, through the intake services.

A Task becomes a draft exactly as `POST /v1/requests` makes one, its
authorization attachment goes through the one upload flow (clamd, SHA-256, S3
staging, PDF checks: `documents.receive_document`), and it is submitted by
`submission.submit`, whose rules decide.  A Task the rules refuse is answered
`rejected` with their codes; its draft is cancelled (so the same identifier can
be sent again, cured) and the findings are kept with the Task.  Any other
refusal (malware, a file that is not a PDF or image, a duplicate identifier)
cancels the draft and is answered as an OperationOutcome; no Task remains.

Reads go through the tenant guard (another organization's Task is a 404) and
are audited; released records appear as outputs only once the request is
fulfilled (gateway.intake.access), each with a download URL valid 5 minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, false, func, or_, select
from sqlalchemy.orm import object_session

from gateway.audit.service import record, record_now
from gateway.auth.models import Organization
from gateway.auth.principal import Principal
from gateway.auth.tenancy import get_visible, tenant_rule, visible_select
from gateway.db import Database
from gateway.errors import GatewayError, NotFound
from gateway.fhir import translate
from gateway.fhir.models import FhirTask
from gateway.fhir.outcome import CODE_SYSTEM, issue, outcome
from gateway.intake import access, documents, lifecycle, service, submission
from gateway.intake.models import RecordsRequest
from gateway.pagination import keyset_page

AUTHORIZATION = "authorization"
# The request's status as a Task's (docs/fhir.md); `returned` and `awaiting_payment` wait on the requester.
STATUS_OF = {"draft": "draft", "submitted": "requested", "routed": "requested", "in_progress": "in-progress",
             "on_hold": "on-hold", "awaiting_payment": "on-hold", "returned": "on-hold", "fulfilled": "completed",
             "denied": "rejected", "cancelled": "cancelled"}
REQUEST_STATUSES_OF: dict[str, tuple[str, ...]] = {}
for _ours, _theirs in STATUS_OF.items():
    REQUEST_STATUSES_OF.setdefault(_theirs, ())
    REQUEST_STATUSES_OF[_theirs] += (_ours,)


@tenant_rule(FhirTask)
def _tasks(principal: Principal):
    if principal.is_requester and principal.org_id:
        return FhirTask.org_id == principal.org_id
    return false()


def create_task(db: Database, *, store, scanner, clock, principal: Principal, task: dict, max_bytes: int,
                audit_ctx: dict) -> str:
    """Create the request a Task asks for and submit it; returns the Task id (the request id)."""
    code = translate.task_code(task)
    with db.transaction() as session:
        org_name = session.get(Organization, principal.org_id).name
    raw, identifier_system, attachments = translate.task_to_body(task, org_name=org_name)
    body = service.load_create_body(raw)
    request_id = service.create_request(db, principal=principal, body=body, audit_ctx=audit_ctx)
    rejection = None
    try:
        for where, data in attachments:
            documents.receive_document(db=db, store=store, scanner=scanner, principal=principal,
                                       request_id=request_id, kind=AUTHORIZATION, filename="authorization.pdf",
                                       chunks=translate.decoded_chunks(data, where), max_bytes=max_bytes,
                                       audit_ctx=audit_ctx)
        try:
            submission.submit(db, principal=principal, request_id=request_id, clock=clock, audit_ctx=audit_ctx)
        except submission.RequestDeficient as deficient:
            rejection = [error.to_dict() for error in deficient.errors]
    except GatewayError:
        service.cancel_request(db, principal=principal, request_id=request_id, reason="FHIR Task refused",
                               audit_ctx=audit_ctx)
        raise
    if rejection is not None:  # the Task is answered `rejected`; its draft is closed so it can be sent again
        service.cancel_request(db, principal=principal, request_id=request_id,
                               reason="FHIR Task rejected by the rules", audit_ctx=audit_ctx)
    with db.transaction() as session:
        session.add(FhirTask(request_id=request_id, org_id=principal.org_id, client_id=principal.id, code=code,
                             identifier_system=(identifier_system or None) and identifier_system[:300],
                             rejection=rejection, rejected_at=clock.now() if rejection is not None else None))
        record(session, actor=principal.audit_actor, org_id=principal.org_id,
               action="fhir.task.reject" if rejection is not None else "fhir.task.create", object_type="request",
               object_id=request_id, **audit_ctx)
    return request_id


def _visible_task(session, principal: Principal, task_id: str, *, db: Database,
                  audit_ctx: dict) -> tuple[RecordsRequest, FhirTask]:
    """The request and Task record of one of the caller's Tasks; 404 for anything else (the tenant guard)."""
    req = get_visible(session, principal, RecordsRequest, task_id, db=db, audit_context=audit_ctx)
    fhir_task = session.scalars(visible_select(principal, FhirTask).where(FhirTask.request_id == req.id)
                                ).one_or_none()
    if fhir_task is None:
        raise NotFound()
    return req, fhir_task


def read_task(db: Database, *, store, principal: Principal, task_id: str, audit_ctx: dict) -> dict:
    """A Task of the caller's organization as FHIR JSON (404 otherwise); the read is audited first."""
    with db.transaction() as session:
        req, fhir_task = _visible_task(session, principal, task_id, db=db, audit_ctx=audit_ctx)
        task, downloads = render(store, principal, req, fhir_task)
    # Audited after the read transaction ends (SQLite's writer would wait on it) and before anything leaves.
    record_now(db, actor=principal.audit_actor, org_id=principal.org_id, action="fhir.task.read",
               object_type="request", object_id=task["id"], **audit_ctx)
    _audit_downloads(db, principal, downloads, audit_ctx)
    return task


def cancel_task(db: Database, *, store, principal: Principal, task_id: str, reason: str | None,
                if_match: str | None, audit_ctx: dict) -> dict:
    """The payer withdraws one of its Tasks (`status` → `cancelled`): the request is cancelled through the one
    lifecycle, under its lock, as the JSON API's cancel does; returns the Task as it now is.

    404 for anyone else's Task; 409 INVALID_TRANSITION once the records team has started (or the Task was
    rejected at intake); 412 when `if_match` names an older version.  A Task already cancelled is answered
    as it is: the update asks for what is already so."""
    with db.transaction() as session:
        req, fhir_task = _visible_task(session, principal, task_id, db=db, audit_ctx=audit_ctx)
        rejected, cancelled = fhir_task.rejected_at is not None, req.status == "cancelled"
    if rejected:
        raise lifecycle.InvalidTransition("This Task was rejected at intake; a rejected Task cannot be cancelled.")
    if not cancelled:
        service.cancel_request(db, principal=principal, request_id=task_id, reason=reason, if_match=if_match,
                               audit_ctx=audit_ctx)
    return read_task(db, store=store, principal=principal, task_id=task_id, audit_ctx=audit_ctx)


def read_consent(db: Database, *, principal: Principal, consent_id: str, audit_ctx: dict) -> dict:
    """The authorization of one of the caller's Tasks as a Consent (404 otherwise, or when it has none)."""
    from gateway.fhir.consent import render_consent

    with db.transaction() as session:
        req = get_visible(session, principal, RecordsRequest, consent_id, db=db, audit_context=audit_ctx)
        if session.scalars(visible_select(principal, FhirTask).where(FhirTask.request_id == req.id)
                           ).one_or_none() is None:
            raise NotFound()
        consent = render_consent(req)
    if consent is None:
        raise NotFound()
    record_now(db, actor=principal.audit_actor, org_id=principal.org_id, action="fhir.consent.read",
               object_type="request", object_id=consent["id"], **audit_ctx)
    return consent


def read_disclosure(db: Database, *, principal: Principal, event_id: str, audit_ctx: dict) -> dict:
    """The release of one of the caller's Tasks' records as an AuditEvent (404 for anything else)."""
    from gateway.fhir.disclosure import render_audit_event
    from gateway.intake.release_models import Disclosure

    with db.transaction() as session:
        disclosure = session.get(Disclosure, event_id)
        visible = disclosure is not None and session.scalars(
            visible_select(principal, FhirTask).where(FhirTask.request_id == disclosure.request_id)).one_or_none()
        if not visible:
            raise NotFound()
        event = render_audit_event(disclosure)
    record_now(db, actor=principal.audit_actor, org_id=principal.org_id, action="fhir.disclosure.read",
               object_type="disclosure", object_id=event["id"], **audit_ctx)
    return event


def _audit_downloads(db: Database, principal: Principal, document_ids: list[str], audit_ctx: dict) -> None:
    for document_id in document_ids:  # each download URL handed out is a download
        record_now(db, actor=principal.audit_actor, org_id=principal.org_id, action="document.download",
                   object_type="document", object_id=document_id, **audit_ctx)


@dataclass(frozen=True)
class TaskPage:
    """One page of a Task search: its Tasks, how many match in all, and the cursor of the next page."""

    tasks: list[dict]
    total: int
    next_cursor: str | None


# Most recently updated first; the id breaks ties, so a page boundary never skips or repeats a Task.
SEARCH_ORDER = (RecordsRequest.updated_at, RecordsRequest.id)


def search_tasks(db: Database, *, store, principal: Principal, status: str | None, identifier: str | None,
                 updated: list[tuple[str, datetime]], count: int, cursor: str | None, audit_ctx: dict) -> TaskPage:
    """The caller's Tasks, most recently updated first, filtered as the search asked, `count` at a time from
    `cursor` (the previous page's `next_cursor`); the search is audited."""
    query = (visible_select(principal, RecordsRequest)
             .join(FhirTask, FhirTask.request_id == RecordsRequest.id)
             .where(FhirTask.org_id == principal.org_id))
    if status:
        ours = REQUEST_STATUSES_OF.get(status, ())
        rejected_at_intake = FhirTask.rejected_at.is_not(None)
        if status == "rejected":
            query = query.where(or_(RecordsRequest.status.in_(ours), rejected_at_intake))
        else:
            query = query.where(RecordsRequest.status.in_(ours), ~rejected_at_intake)
    if identifier:
        system, bar, value = identifier.rpartition("|")
        query = query.where(RecordsRequest.reference == value)
        if bar and system:
            query = query.where(FhirTask.identifier_system == system)
    comparisons = {"gt": lambda c, v: c > v, "ge": lambda c, v: c >= v, "lt": lambda c, v: c < v,
                   "le": lambda c, v: c <= v}
    if updated:
        query = query.where(and_(*(comparisons[op](RecordsRequest.updated_at, when) for op, when in updated)))
    found, downloads = [], []
    with db.transaction() as session:
        # A bad cursor is refused (400) before anything is read or audited.
        requests, next_cursor = keyset_page(session, query, columns=SEARCH_ORDER, limit=count, cursor=cursor)
        total = session.scalar(select(func.count()).select_from(query.subquery()))
        for req in requests:
            task, handed_out = render(store, principal, req, session.get(FhirTask, req.id))
            found.append(task)
            downloads += handed_out
    record_now(db, actor=principal.audit_actor, org_id=principal.org_id, action="fhir.task.search",
               object_type="request", object_id=None, **audit_ctx)
    _audit_downloads(db, principal, downloads, audit_ctx)
    return TaskPage(found, total, next_cursor)


def _iso(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def render(store, principal: Principal, req: RecordsRequest, fhir_task: FhirTask) -> tuple[dict, list[str]]:
    """The Task of a request, and the documents whose download URLs it hands out (to audit): outputs
    (DocumentReferences with 5-minute URLs) appear only once the records are released."""
    status = "rejected" if fhir_task.rejected_at is not None else STATUS_OF[req.status]
    patient = req.patient or {}
    contained = [{"resourceType": "Patient", "id": "patient",
                  "name": [{"family": patient.get("last_name"), "given": [patient.get("first_name")]}],
                  "birthDate": patient.get("date_of_birth")}]
    task = {"resourceType": "Task", "id": req.id,
            "meta": {"versionId": str(req.version), "lastUpdated": _iso(req.updated_at),
                     "profile": [translate.PROFILES[fhir_task.code]]},
            "contained": contained,
            "identifier": [{"system": fhir_task.identifier_system, "value": req.reference}
                           if fhir_task.identifier_system else {"value": req.reference}],
            "status": status, "businessStatus": {"text": req.status}, "intent": "order",
            "code": {"coding": [{"system": translate.CDEX_TEMP, "code": fhir_task.code}]},
            "for": {"reference": "#patient"}, "authoredOn": _iso(req.created_at),
            "lastModified": _iso(req.updated_at),
            "requester": {"identifier": {"system": translate.ORGANIZATION_SYSTEM, "value": req.org_id}},
            "owner": {"identifier": {"system": translate.FACILITY_SYSTEM, "value": req.facility}},
            "input": [{"type": {"coding": [{"system": translate.HREX_TEMP, "code": "data-code"}]},
                       "valueCodeableConcept": {"coding": [{"system": translate.LOINC,
                                                            "code": translate.LOINC_OF.get(kind, "60591-5")}],
                                                "text": kind}}
                      for kind in (req.records or {}).get("types", [])]}
    if req.authorization:  # the authorization as its own Consent resource (GET /fhir/r4/Consent/{id})
        task["input"].append({"type": {"coding": [{"system": translate.LOINC, "code": translate.RELEASE_CONSENT}]},
                              "valueReference": {"reference": f"Consent/{req.id}"}})
    if not task["input"]:
        del task["input"]
    outputs, downloads = [], []
    if fhir_task.rejection is not None:
        codes = [finding["code"] for finding in fhir_task.rejection]
        task["statusReason"] = {"coding": [{"system": CODE_SYSTEM, "code": code} for code in codes],
                                "text": f"The request has {len(codes)} problem(s) a records team would send back."}
        contained.append({**outcome([issue(f["code"], f["message"], field=f.get("field"))
                                     for f in fhir_task.rejection]), "id": "outcome"})
        outputs.append({"type": {"coding": [{"system": CODE_SYSTEM, "code": "operation-outcome"}]},
                        "valueReference": {"reference": "#outcome"}})
    if req.status == access.RELEASED:
        from gateway.intake.release_models import Disclosure

        disclosure = object_session(req).scalars(select(Disclosure.id).where(Disclosure.request_id == req.id)
                                                 ).first()
        if disclosure:  # the release itself, as an AuditEvent (IHE BALP PrivacyDisclosure)
            outputs.append({"type": {"coding": [{"system": CODE_SYSTEM, "code": "disclosure"}]},
                            "valueReference": {"reference": f"AuditEvent/{disclosure}"}})
        released = [d for d in req.documents
                    if d.kind == access.RELEASE and access.document_visible_to(principal, req, d)]
        for number, document in enumerate(released, start=1):
            downloads.append(document.id)
            contained.append({
                "resourceType": "DocumentReference", "id": f"doc{number}", "status": "current",
                "identifier": [{"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{document.id}"}],
                "subject": {"reference": "#patient"}, "date": _iso(document.uploaded_at),
                "content": [{"attachment": {"contentType": document.content_type,
                                            "url": documents.download_url(store, document),
                                            "size": document.size, "title": "Released records"}}],
                "extension": [{"url": "https://records-gateway.invalid/fhir/StructureDefinition/sha256",
                               "valueString": document.sha256}]})
            outputs.append({"type": {"coding": [{"system": translate.HREX_TEMP, "code": "data-value"}]},
                            "valueReference": {"reference": f"#doc{number}"}})
    if outputs:
        task["output"] = outputs
    return task, downloads

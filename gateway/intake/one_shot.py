"""One-shot submission for simple clients: `POST /v1/requests` as multipart/form-data.

Parts: `request` (the create body as JSON) first, then one file part per
document, named by its kind (`authorization`, `representative_authority`...),
and `?submit=true` to submit at once.  Every file goes through the same
streaming scan, checks and storage as a single upload.  If anything fails, the
draft created for it is cancelled (so resending with the same reference works)
and the error names it in `cancelled_request_id`; documents already accepted stay attached
to that cancelled draft, and malware is recorded as for any upload.
"""

from __future__ import annotations

import json

from flask import request, url_for

from gateway import idempotency
from gateway.auth.web import audit_context, current_principal
from gateway.errors import GatewayError, Unprocessable
from gateway.intake import documents, service, submission
from gateway.intake.multipart import MultipartReader, boundary_of
from gateway.intake.uploads import FileTooLarge, ingest
from gateway.web import adapters, clock, db_session, replay_response, settings


def _fingerprint(request_json: str, files: list[tuple[str, str, str]], submit: bool) -> str:
    return idempotency.fingerprint("one-shot", request_json, str(submit), *(":".join(f) for f in files))


def create_one_shot(load_body, present):
    """Handle the multipart form of create; `load_body` validates the JSON, `present` renders the result."""
    principal, a, s = current_principal(), adapters(), settings()
    submit = request.args.get("submit", "false").lower() in {"1", "true", "yes"}
    reader = MultipartReader(request.stream, boundary_of(request.content_type))
    key = request.headers.get("Idempotency-Key")
    prior = idempotency.begin_streamed(a.db, principal=principal.audit_actor, key=key)
    parts = reader.parts()
    first = next(parts, None)
    if first is None or first.name != "request":
        raise Unprocessable("The first part must be `request`: the request as JSON.", code="VALIDATION_FAILED")
    request_json = first.text()
    files: list[tuple[str, str, str]] = []
    if prior is not None:  # a replay: fingerprint what was sent, then answer as the first time
        import hashlib

        for part in parts:
            digest = hashlib.sha256()
            for chunk in part.chunks():
                digest.update(chunk)
            files.append((part.name, part.filename or "", digest.hexdigest()))
        idempotency.compare(prior[0], _fingerprint(request_json, files, submit))
        return replay_response(prior[1])
    try:
        body = load_body(json.loads(request_json))
    except ValueError:
        _release(key)
        raise Unprocessable("The `request` part is not valid JSON.", code="BODY_NOT_JSON") from None
    except GatewayError:
        _release(key)
        raise
    session = db_session()
    req = service.create_request(session, principal=principal, body=body, audit_ctx=audit_context())
    session.commit()
    ingested = None
    try:
        for part in parts:
            if not part.is_file or part.name not in documents.REQUESTER_KINDS:
                raise Unprocessable(f"Unexpected part `{part.name[:40]}`; name file parts by document kind.",
                                    code="VALIDATION_FAILED")
            kind = documents.check_kind(principal, req, part.name)
            ingested = ingest(part.chunks(), scanner=a.scanner, store=a.store, max_bytes=s.max_upload_bytes,
                              filename=part.filename)
            try:
                pages, _ = documents.judge(ingested)
            except documents.MalwareDetected:
                documents.record_malware(a.db, principal=principal, req=req, kind=kind, ingested=ingested,
                                         audit_ctx=audit_context())
                raise
            documents.accept(session, store=a.store, principal=principal, req=req, kind=kind,
                             filename=part.filename, ingested=ingested, pages=pages, audit_ctx=audit_context())
            session.commit()
            files.append((kind, part.filename or "", ingested.sha256))
            ingested.discard_spool()
            ingested = None
        if submit:
            submission.submit(session, principal=principal, req=req,
                              on=clock().today(), audit_ctx=audit_context())
            session.commit()
    except GatewayError as error:
        session.rollback()
        if ingested is not None:
            documents.discard(a.store, ingested)
        if not isinstance(error, FileTooLarge):
            reader.drain(s.max_upload_bytes)
        service.cancel_request(session, principal=principal, req=req, audit_ctx=audit_context())
        session.commit()
        error.extensions.setdefault("cancelled_request_id", req.id)
        _release(key)
        raise
    except BaseException:
        if ingested is not None:
            documents.discard(a.store, ingested)
        _release(key)
        raise
    body_out, location = present(req), url_for("requests.get_request", request_id=req.id)
    if key is not None:
        from gateway.intake.schemas import RequestSchema

        idempotency.complete(a.db, principal=principal.audit_actor, key=key,
                             print_=_fingerprint(request_json, files, submit),
                             response=idempotency.StoredResponse(201, RequestSchema().dump(body_out), location))
    return body_out, 201, {"Location": location}


def _release(key: str | None) -> None:
    if key is not None:
        idempotency.release(adapters().db, principal=current_principal().audit_actor, key=key)

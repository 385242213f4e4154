"""One-shot submission for simple clients: `POST /v1/requests` as multipart/form-data.

Parts: `request` (the create body as JSON) first, then one file part per
document, named by its kind (`authorization`, `representative_authority`...),
and `?submit=true` to submit at once.  Every file goes through the one upload
flow (`documents.receive_document`), exactly as a single upload does.  If
anything fails, the draft created for it is cancelled (so resending with the
same reference works) and the error names it in `cancelled_request_id`;
documents already accepted stay attached to that cancelled draft, and malware
is recorded as for any upload.
"""

from __future__ import annotations

import hashlib

from flask import request

from gateway import idempotency, jsonbody
from gateway.auth.web import audit_context, current_principal
from gateway.errors import GatewayError, MalformedJson, PayloadTooLarge, Unprocessable
from gateway.intake import documents, service, submission
from gateway.intake.multipart import MAX_REQUEST_PART_BYTES, MultipartReader, boundary_of
from gateway.intake.upload_web import reading_service
from gateway.web import adapters, clock, query_flag, replay_response, settings


def _fingerprint(request_json: str, files: list[tuple[str, str, str]], submit: bool) -> str:
    return idempotency.fingerprint("one-shot", request_json, str(submit), *(":".join(f) for f in files))


def create_one_shot(load_body, created):
    """Handle the multipart form of create; `load_body` validates the JSON, `created(id)` renders the 201."""
    principal, a, s = current_principal(), adapters(), settings()
    submit = query_flag("submit")
    reader = MultipartReader(request.stream, boundary_of(request.content_type))
    key = request.headers.get("Idempotency-Key")
    prior = idempotency.begin_streamed(a.db, principal=principal.audit_actor, key=key)
    parts = reader.parts()
    files: list[tuple[str, str, str]] = []
    try:
        first = next(parts, None)
        if first is None or first.name != "request" or first.is_file:
            raise Unprocessable("The first part must be `request`: the request as JSON.", code="VALIDATION_FAILED")
        request_json = first.text(limit=MAX_REQUEST_PART_BYTES)
        if prior is not None:  # a replay: fingerprint what was sent, then answer as the first time
            for part in parts:
                digest = hashlib.sha256()
                for chunk in part.chunks():
                    digest.update(chunk)
                files.append((part.name, part.filename or "", digest.hexdigest()))
            idempotency.compare(prior[0], _fingerprint(request_json, files, submit))
            return replay_response(prior[1])
        try:
            body = load_body(jsonbody.loads(request_json))
        except jsonbody.MalformedJsonError as error:
            raise MalformedJson(f"The `request` part is not usable JSON: {error}.") from None
        request_id = service.create_request(a.db, principal=principal, body=body, audit_ctx=audit_context())
    except GatewayError:
        _release(key, prior)  # nothing was created: a retry with the same key must run again
        raise
    try:
        for part in parts:
            if not part.is_file or part.name not in documents.REQUESTER_KINDS:
                raise Unprocessable(f"Unexpected part `{part.name[:40]}`; name file parts by document kind.",
                                    code="VALIDATION_FAILED")
            document = documents.receive_document(
                db=a.db, store=a.store, scanner=a.scanner, principal=principal, request_id=request_id,
                kind=part.name, filename=part.filename, chunks=part.chunks(), max_bytes=s.max_upload_bytes,
                audit_ctx=audit_context(), reading=reading_service())
            files.append((part.name, part.filename or "", document.sha256))
        if submit:
            submission.submit(a.db, principal=principal, request_id=request_id, clock=clock(),
                              audit_ctx=audit_context(), reading_wait=s.reading_submit_wait)
    except GatewayError as error:
        if not isinstance(error, PayloadTooLarge):  # past a cap: answer now, never read the rest
            reader.drain(s.max_upload_bytes)
        service.cancel_request(a.db, principal=principal, request_id=request_id, reason="one-shot form refused",
                               audit_ctx=audit_context())
        error.extensions.setdefault("cancelled_request_id", request_id)
        _release(key, prior)
        raise
    except BaseException:
        _release(key, prior)
        raise
    response = created(request_id)
    if key is not None:
        idempotency.complete(a.db, principal=principal.audit_actor, key=key,
                             print_=_fingerprint(request_json, files, submit),
                             response=idempotency.StoredResponse(201, response.get_json(),
                                                                 response.headers.get("Location")))
    return response


def _release(key: str | None, prior) -> None:
    if key is not None and prior is None:
        idempotency.release(adapters().db, principal=current_principal().audit_actor, key=key)

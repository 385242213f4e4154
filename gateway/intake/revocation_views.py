"""`POST /v1/revocations`: records teams record a patient's revocation; the open requests it covers are held."""

from __future__ import annotations

from flask_smorest import Blueprint

from gateway.auth.web import audit_context, current_principal, requires
from gateway.intake import revocations
from gateway.intake.schemas import RevocationCreateSchema, RevocationSchema
from gateway.web import IDEMPOTENCY_HEADER, adapters, idempotent

blp = Blueprint("revocations", __name__, url_prefix="/v1/revocations",
                description="Patients' revocations of authorizations.")


@blp.route("", methods=["POST"])
@requires("facility_staff")
@idempotent
@blp.doc(parameters=[IDEMPOTENCY_HEADER])
@blp.arguments(RevocationCreateSchema)
@blp.response(201, RevocationSchema)
@blp.alt_response(404, description="NOT_FOUND: `document_id` names no document of a request you work")
def create_revocation(body):
    """Record a patient's written revocation for a recipient; every open request it covers goes on hold."""
    revocation, held = revocations.record_revocation(
        adapters().db, principal=current_principal(), patient=body["patient"], recipient=body["recipient"],
        effective_on=body["effective_on"], document_id=body.get("document_id"), audit_ctx=audit_context())
    return {"id": revocation.id, "recipient": revocation.recipient, "effective_on": revocation.effective_on,
            "document_id": revocation.document_id, "held_requests": held, "created_at": revocation.created_at}, 201

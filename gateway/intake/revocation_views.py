"""`POST /v1/revocations`: records teams record a patient's revocation (operators hold no patient data)."""

from __future__ import annotations

from flask_smorest import Blueprint

from gateway.auth.web import audit_context, current_principal, requires
from gateway.intake import submission
from gateway.intake.schemas import RevocationCreateSchema, RevocationSchema
from gateway.web import IDEMPOTENCY_HEADER, db_session, idempotent

blp = Blueprint("revocations", __name__, url_prefix="/v1/revocations",
                description="Patients' revocations of authorizations.")


@blp.route("", methods=["POST"])
@requires("facility_staff")
@idempotent
@blp.doc(parameters=[IDEMPOTENCY_HEADER])
@blp.arguments(RevocationCreateSchema)
@blp.response(201, RevocationSchema)
def create_revocation(body):
    """Record that a patient revoked authorizations for a recipient from a date; open requests are flagged."""
    session = db_session()
    revocation, touched = submission.record_revocation(
        session, principal=current_principal(), patient=body["patient"], recipient=body["recipient"],
        effective_on=body["effective_on"], audit_ctx=audit_context())
    session.commit()
    return {"id": revocation.id, "recipient": revocation.recipient, "effective_on": revocation.effective_on,
            "flagged_requests": touched, "created_at": revocation.created_at}, 201

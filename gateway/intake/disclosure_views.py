"""`POST /v1/disclosures/search`: a patient's accounting of disclosures (45 CFR 164.528; API.md v1.1)."""

from __future__ import annotations

from flask_smorest import Blueprint

from gateway.auth.web import audit_context, current_principal, requires
from gateway.intake import disclosures, service
from gateway.intake.release_schemas import DisclosurePageSchema, DisclosureSearchSchema
from gateway.pagination import PageArgsSchema
from gateway.web import adapters, clock, db_session

blp = Blueprint("disclosures", __name__, url_prefix="/v1/disclosures",
                description="The accounting of disclosures (45 CFR 164.528).")


@blp.route("/search", methods=["POST"])
@requires("auditor", "facility_staff")
@blp.arguments(PageArgsSchema, location="query")
@blp.arguments(DisclosureSearchSchema)
@blp.response(200, DisclosurePageSchema)
def search_disclosures(page, body):
    """A patient's disclosures, newest first, at most six years back: releases under legal process (subpoena,
    court order), and with `include_exempt` also those under the patient's authorization. Auditors see every
    facility; records staff their own facilities. The patient is named in the body, never in the URL; the
    search is audited."""
    principal, patient = current_principal(), body["patient"]
    items, next_cursor, (since, until) = disclosures.search(
        db_session(), principal, first_name=patient["first_name"], last_name=patient["last_name"],
        date_of_birth=patient["date_of_birth"], since=body["since"], until=body["until"],
        include_exempt=body["include_exempt"], today=clock().today(), timezone=clock().timezone, **page)
    # A read of PHI: audited before the answer leaves, naming no one (the patient is in no entry).
    service.audit_read(adapters().db, principal, "disclosure.search", "disclosure", None, audit_context())
    return {"items": [d.to_resource() for d in items], "next_cursor": next_cursor, "since": since, "until": until}

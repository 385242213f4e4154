"""The accounting of disclosures in the portal: a search form (POST: the patient never travels in a URL) and the
results, for compliance (every facility) and records staff (their facilities), as `POST /v1/disclosures/search`."""

from __future__ import annotations

from flask import g, request
from marshmallow import ValidationError

from gateway.auth.web import audit_context, requires
from gateway.errors import FieldError, Unprocessable, flatten_messages
from gateway.facilities.service import list_facilities
from gateway.intake import disclosures, service
from gateway.intake.release_schemas import DisclosureSearchSchema
from gateway.portal import bp
from gateway.portal.web import page
from gateway.web import adapters, clock, db_session

PAGE_SIZE = 50
FIELDS = ("first_name", "last_name", "date_of_birth", "from", "to")
PATHWAY_LABELS = {"authorization": "Patient authorization", "subpoena": "Subpoena", "court_order": "Court order"}
_MESSAGES = {"first_name": "Enter the patient's first name.", "last_name": "Enter the patient's last name.",
             "date_of_birth": "Enter the patient's date of birth.", "from": "Enter a valid first day, or none.",
             "to": "Enter a valid last day, or none."}


def _form_values() -> dict:
    values = {name: (request.form.get(name) or "").strip()[:100] for name in FIELDS}
    values["include_exempt"] = request.form.get("include_exempt") == "on"
    return values


def _render(status: int = 200, **context):
    defaults = {"values": {}, "errors": [], "results": None, "next_cursor": None, "window": None,
                "facility_names": {f.code: f.name for f in list_facilities(db_session())},
                "pathways": PATHWAY_LABELS}
    return page("portal/disclosures.html", status, **{**defaults, **context})


@bp.route("/disclosures", methods=["GET"])
@requires("auditor", "facility_staff")
def disclosures_page():
    """The search form of a patient's accounting of disclosures."""
    return _render()


@bp.route("/disclosures", methods=["POST"])
@requires("auditor", "facility_staff")
def disclosures_search():
    """The patient's disclosures, newest first, at most six years back (audited as a read of PHI)."""
    values = _form_values()
    try:
        body = DisclosureSearchSchema().load({
            "patient": {"first_name": values["first_name"] or None, "last_name": values["last_name"] or None,
                        "date_of_birth": values["date_of_birth"] or None},
            "from": values["from"] or None, "to": values["to"] or None, "include_exempt": values["include_exempt"]})
    except ValidationError as invalid:
        errors = [FieldError(e.code, name, _MESSAGES.get(name, e.message))
                  for e in flatten_messages(invalid.messages) for name in [(e.field or "").split(".")[-1]]]
        return _render(422, values=values, errors=errors)
    patient, cursor = body["patient"], (request.form.get("cursor") or "")[:200] or None
    try:
        items, next_cursor, window = disclosures.search(
            db_session(), g.principal, first_name=patient["first_name"], last_name=patient["last_name"],
            date_of_birth=patient["date_of_birth"], since=body["since"], until=body["until"],
            include_exempt=body["include_exempt"], today=clock().today(), timezone=clock().timezone,
            limit=PAGE_SIZE, cursor=cursor)
    except Unprocessable as error:  # `to` before `from`
        return _render(422, values=values, errors=[FieldError("INVALID_FIELD", "to", error.detail)])
    service.audit_read(adapters().db, g.principal, "disclosure.search", "disclosure", None, audit_context())
    return _render(values=values, results=[d.to_resource() for d in items], next_cursor=next_cursor, window=window)

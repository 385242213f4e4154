"""`GET /v1/facilities`: the public facility catalogue."""

from __future__ import annotations

from flask_smorest import Blueprint
from marshmallow import Schema, fields

from gateway.facilities import service
from gateway.web import db_session

blp = Blueprint("facilities", __name__, url_prefix="/v1/facilities",
                description="Where the patient received care.")


class FacilitySchema(Schema):
    code = fields.String(metadata={"example": "tufts-mc"})
    name = fields.String(metadata={"example": "Tufts Medical Center"})
    accepts_electronic = fields.Boolean()
    turnaround_days = fields.Integer()


@blp.route("")
@blp.response(200, FacilitySchema(many=True))
def list_facilities():
    """List the facilities a request can be sent to (no authentication)."""
    return service.list_facilities(db_session())

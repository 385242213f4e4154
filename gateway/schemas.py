"""Schemas shared by every domain: the problem+json error shape."""

from __future__ import annotations

from marshmallow import INCLUDE, Schema, fields, validate

# Control characters: never in a stored name, id or reference, and NUL cannot even be compared on PostgreSQL.
NO_CONTROL_PATTERN = "^[^\x00-\x1f\x7f]*$"


class WholeNumber(fields.Integer):
    """A JSON integer, as JSON Schema reads one: 7 or 7.0, but not 7.5, "7" or true."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class Flag(fields.Boolean):
    """A JSON boolean: `true` or `false`, not 1, "yes" or "true" (the document says boolean)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class QueryFlag(fields.Boolean):
    """A boolean query parameter as OpenAPI writes one: `true` or `false`, not 1, "yes" or "on"."""

    def _deserialize(self, value, attr, data, **kwargs):
        if value not in ("true", "false"):
            raise self.make_error("invalid")
        return value == "true"


class PlainText(fields.String):
    """An id, name or filter: `min_length`..`max_length` characters, no control characters (else 422)."""

    def __init__(self, max_length: int, min_length: int = 1, **kwargs):
        kwargs["metadata"] = {"pattern": NO_CONTROL_PATTERN, **kwargs.get("metadata", {})}
        super().__init__(validate=[validate.Length(min_length, max_length),
                                   validate.Regexp(NO_CONTROL_PATTERN, error="Control characters are not allowed.")],
                         **kwargs)


class FieldErrorSchema(Schema):
    code = fields.String(required=True, metadata={"example": "AUTH_EXPIRED"})
    field = fields.String(required=True, allow_none=True, metadata={"example": "authorization.expires_on"})
    message = fields.String(required=True)
    rule = fields.String(required=True, allow_none=True, metadata={"example": "45 CFR 164.508(b)(2)(i)"})


class ProblemSchema(Schema):
    """RFC 9457 problem details, as every error of the gateway is answered (extension members may follow)."""

    class Meta:
        unknown = INCLUDE  # documented as additionalProperties: problems may carry extension members
        ordered = True

    type = fields.String(required=True, metadata={"example": "/problems/not-found"})
    title = fields.String(required=True)
    status = fields.Integer(required=True, metadata={"minimum": 400, "maximum": 599})
    detail = fields.String(required=True)
    code = fields.String(required=True, metadata={"description": "Stable UPPER_SNAKE identifier",
                                                  "pattern": "^[A-Z][A-Z0-9_]*$"})
    request_id = fields.String(required=True, metadata={"description": "The X-Request-ID of the response"})
    errors = fields.List(fields.Nested(FieldErrorSchema), required=True)
    # Extension members of some problems.
    cancelled_request_id = fields.String(metadata={
        "description": "One-shot create: the draft made for this attempt, cancelled (resending the same "
                       "reference works)."})
    signature = fields.String(metadata={"description": "MALWARE_DETECTED: the scanner's signature name."})
    unavailable = fields.List(fields.String(), metadata={"description": "NOT_READY: the dependencies down."})
    checks = fields.Dict(metadata={"description": "NOT_READY: every dependency check, as /readyz gives them."})
    version = fields.Integer(metadata={"description": "PRECONDITION_FAILED: the request's current version."})


class Timestamp(fields.DateTime):
    """A UTC timestamp written as API.md shows them: `2026-11-23T18:16:00.123456Z`."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        from datetime import UTC

        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

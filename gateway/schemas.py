"""Schemas shared by every domain: the problem+json error shape."""

from __future__ import annotations

from marshmallow import Schema, fields


class FieldErrorSchema(Schema):
    code = fields.String(required=True, metadata={"example": "AUTH_EXPIRED"})
    field = fields.String(allow_none=True, metadata={"example": "authorization.expires_on"})
    message = fields.String(required=True)
    rule = fields.String(allow_none=True, metadata={"example": "45 CFR 164.508(b)(2)(i)"})


class ProblemSchema(Schema):
    """RFC 9457 problem details, as every error of the gateway is answered."""

    type = fields.String(metadata={"example": "/problems/not-found"})
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    code = fields.String(metadata={"description": "Stable UPPER_SNAKE identifier"})
    request_id = fields.String()
    errors = fields.List(fields.Nested(FieldErrorSchema))


class Timestamp(fields.DateTime):
    """A UTC timestamp written as API.md shows them: `2026-11-23T18:16:00.123456Z`."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        from datetime import UTC

        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

"""Cursor pagination shared by every list endpoint: `?limit=` (1..100) and an opaque `?cursor=`."""

from __future__ import annotations

import base64
import json

from marshmallow import Schema, fields, validate

from gateway.errors import FieldError, Unprocessable


class PageArgsSchema(Schema):
    limit = fields.Integer(load_default=25, validate=validate.Range(1, 100))
    cursor = fields.String(load_default=None, validate=validate.Length(max=200))


class PageSchema(Schema):
    next_cursor = fields.String(allow_none=True)


def encode_cursor(position: dict) -> str:
    """An opaque cursor for the keyset position after the last item shown."""
    return base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> dict | None:
    """The keyset position in a cursor; 422 INVALID_CURSOR when it was not ours."""
    if not cursor:
        return None
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(position, dict):
            raise ValueError
        return position
    except ValueError:
        raise Unprocessable("The cursor is not valid.", code="INVALID_CURSOR",
                            errors=[FieldError("INVALID_CURSOR", "cursor", "not a cursor from this API")]) from None


def keyset_page(session, query, *, columns, limit: int, cursor: str | None, descending: bool = True):
    """Run `query` ordered by `columns` from the cursor's position; returns (items, next_cursor).

    The last column must be unique (an id) so the order is total and no row is
    skipped or repeated between pages, however many rows share a timestamp.
    """
    from datetime import datetime

    from sqlalchemy import literal, tuple_

    from gateway.db import UTCDateTime

    position = decode_cursor(cursor)
    if position is not None:
        try:
            values = [datetime.fromisoformat(v) if isinstance(c.type, UTCDateTime) else v
                      for c, v in zip(columns, position["k"], strict=True)]
        except (KeyError, TypeError, ValueError):
            raise Unprocessable("The cursor is not valid.", code="INVALID_CURSOR",
                                errors=[FieldError("INVALID_CURSOR", "cursor", "not a cursor from this API")]) from None
        keys = tuple_(*columns)
        bound = tuple_(*(literal(v, type_=c.type) for c, v in zip(columns, values, strict=True)))
        query = query.where(keys < bound if descending else keys > bound)
    ordering = [c.desc() if descending else c.asc() for c in columns]
    rows = list(session.scalars(query.order_by(*ordering).limit(limit + 1)))
    items, more = rows[:limit], len(rows) > limit
    next_cursor = None
    if more:
        last = items[-1]
        next_cursor = encode_cursor({"k": [_plain(getattr(last, c.key)) for c in columns]})
    return items, next_cursor


def _plain(value):
    return value.isoformat() if hasattr(value, "isoformat") else value

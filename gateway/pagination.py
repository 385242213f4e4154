"""Cursor pagination shared by every list endpoint: `?limit=` (1..100) and an opaque `?cursor=`.

Keyset paging: a list is ordered by a few columns, the last of them unique (an
id), and the next page starts strictly after the last item shown, so no item is
skipped or repeated however many share a sort value or however the list
changes between pages.

The cursor is base64url (no padding) of compact JSON `[1, "<order>", [<keys>]]`:
a format version, a short digest naming the list's ordering (a cursor of one
list is refused by another), and the last item's sort values, each in the one
JSON form of its column's type — a timestamp as integer microseconds since the
Unix epoch (UTC), a date as `"YYYY-MM-DD"`, an integer as itself, a string as
itself, and `null` only where the column may be NULL.  Anything else is 400
`INVALID_CURSOR`, decided before the database is asked; never a 500.

Nullable sort columns (a request's `due_on`) sort NULLs last in either
direction, on SQLite as on PostgreSQL (whose defaults differ), and the "after
the cursor" condition is spelled out per column so NULLs are neither skipped
nor repeated (a row-value comparison with a NULL is unknown, not false).

The cursor is validated, not signed: decoding it gives nothing the caller could
not see anyway, since every query it resumes keeps its tenant and filter
conditions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from marshmallow import Schema, fields, validate
from sqlalchemy import and_, false, or_

from gateway.errors import BadRequest, FieldError

CURSOR_VERSION = 1
MAX_CURSOR_LENGTH = 200
_CURSOR_CHARS = re.compile(r"^[A-Za-z0-9_-]+$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_INT_RANGE = (-(2 ** 63), 2 ** 63 - 1)
_MAX_STRING = 128


class InvalidCursor(BadRequest):
    """A cursor this list did not issue (400 INVALID_CURSOR); paging restarts without one."""

    code, title = "INVALID_CURSOR", "Invalid cursor"

    def __init__(self):
        super().__init__("The cursor is not one this list issued; start again without a cursor.",
                         errors=[FieldError("INVALID_CURSOR", "cursor", "not a cursor from this list")])


def cursor_field() -> fields.String:
    """The `cursor` query parameter as every list declares it (its content is checked by `keyset_page`)."""
    return fields.String(load_default=None, metadata={
        # An empty cursor is the first page, as no cursor is.
        "maxLength": MAX_CURSOR_LENGTH, "pattern": "^[A-Za-z0-9_-]*$",
        "description": "Opaque: the `next_cursor` of the previous page of the same list, unchanged (empty or "
                       "absent: the first page). Anything else is 400 INVALID_CURSOR."})


class PageArgsSchema(Schema):
    limit = fields.Integer(load_default=25, validate=validate.Range(1, 100))
    cursor = cursor_field()


class PageSchema(Schema):
    next_cursor = fields.String(allow_none=True)


@dataclass(frozen=True)
class _Key:
    """One sort column: the expression, how its values travel in a cursor, and whether it may be NULL."""

    expression: object
    attribute: str
    kind: type
    nullable: bool
    max_length: int | None


def _key(column) -> _Key:
    expression = getattr(column, "expression", column)
    sql_type = expression.type
    sql_type = getattr(sql_type, "impl_instance", sql_type)  # a TypeDecorator (UTCDateTime) pages as its impl
    try:
        kind = sql_type.python_type
    except NotImplementedError:
        kind = None
    if kind not in (datetime, date, int, str):
        raise TypeError(f"cannot page on {column}: only timestamps, dates, integers and strings")
    length = getattr(sql_type, "length", None) if kind is str else None
    return _Key(expression=expression, attribute=getattr(column, "key", expression.key), kind=kind,
                nullable=bool(getattr(expression, "nullable", True)),
                max_length=length)


def _ordering_digest(keys: list[_Key], descending: bool) -> str:
    names = ",".join(f"{getattr(getattr(k.expression, 'table', None), 'name', '')}.{k.expression.key}" for k in keys)
    return hashlib.sha256(f"{'desc' if descending else 'asc'}:{names}".encode()).hexdigest()[:10]


def _encode_value(key: _Key, value):
    if value is None:
        if not key.nullable:
            raise ValueError(f"{key.attribute} is NULL but not nullable")
        return None
    if key.kind is datetime:
        if value.tzinfo is None:
            raise ValueError("naive timestamp")
        return (value - _EPOCH) // _MICROSECOND
    if key.kind is date:
        return value.isoformat()
    return value


def _decode_value(key: _Key, raw):
    """The typed value of one cursor key, or ValueError."""
    if raw is None:
        if key.nullable:
            return None
        raise ValueError("null")
    if key.kind is datetime:
        if type(raw) is not int:
            raise ValueError("timestamp")
        try:
            return _EPOCH + raw * _MICROSECOND
        except OverflowError:
            raise ValueError("timestamp") from None
    if key.kind is date:
        if type(raw) is not str or not _ISO_DATE.match(raw):
            raise ValueError("date")
        return date.fromisoformat(raw)
    if key.kind is int:
        if type(raw) is not int or not _INT_RANGE[0] <= raw <= _INT_RANGE[1]:
            raise ValueError("integer")
        return raw
    if type(raw) is not str or len(raw) > (key.max_length or _MAX_STRING):
        raise ValueError("string")
    return raw


def encode_cursor(keys: list[_Key], descending: bool, item) -> str:
    """The cursor resuming after `item`."""
    values = [_encode_value(k, getattr(item, k.attribute)) for k in keys]
    document = json.dumps([CURSOR_VERSION, _ordering_digest(keys, descending), values], separators=(",", ":"))
    return base64.urlsafe_b64encode(document.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, keys: list[_Key], descending: bool) -> list:
    """The typed sort values in `cursor`, or InvalidCursor."""
    if len(cursor) > MAX_CURSOR_LENGTH or not _CURSOR_CHARS.match(cursor):
        raise InvalidCursor()
    try:
        document = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        version, ordering, raw = document
        if version != CURSOR_VERSION or ordering != _ordering_digest(keys, descending):
            raise ValueError("another list's cursor")
        if not isinstance(raw, list) or len(raw) != len(keys):
            raise ValueError("shape")
        return [_decode_value(k, v) for k, v in zip(keys, raw, strict=True)]
    except (ValueError, TypeError, binascii.Error, RecursionError):
        raise InvalidCursor() from None


def _after(keys: list[_Key], values: list, descending: bool):
    """Rows strictly after the cursor under ORDER BY keys (each NULLS LAST), spelled out column by column."""
    alternatives, equal_so_far = [], []
    for key, value in zip(keys, values, strict=True):
        column = key.expression
        if value is None:  # NULLs come last: after a NULL only more NULLs, decided by the later keys
            beyond, same = false(), column.is_(None)
        else:
            beyond = column < value if descending else column > value
            if key.nullable:
                beyond = or_(beyond, column.is_(None))
            same = column == value
        alternatives.append(and_(*equal_so_far, beyond))
        equal_so_far.append(same)
    # Implied by the alternatives, but a plain range on the first key lets an index start at the cursor
    # instead of filtering every row before it.
    first, value = keys[0].expression, values[0]
    if value is None:
        start = first.is_(None)
    else:
        start = first <= value if descending else first >= value
        if keys[0].nullable:
            start = or_(start, first.is_(None))
    return and_(start, or_(*alternatives))


def _ordering(keys: list[_Key], descending: bool) -> list:
    terms = []
    for key in keys:
        term = key.expression.desc() if descending else key.expression.asc()
        terms.append(term.nulls_last() if key.nullable else term)
    return terms


def keyset_page(session, query, *, columns, limit: int, cursor: str | None, descending: bool = True):
    """Run `query` ordered by `columns` from the cursor's position; returns (items, next_cursor).

    The last column must be unique (an id) so the order is total and no row is
    skipped or repeated between pages, however many rows share a sort value.
    """
    keys = [_key(column) for column in columns]
    if cursor:
        query = query.where(_after(keys, decode_cursor(cursor, keys, descending), descending))
    rows = list(session.scalars(query.order_by(*_ordering(keys, descending)).limit(limit + 1)))
    items, more = rows[:limit], len(rows) > limit
    return items, (encode_cursor(keys, descending, items[-1]) if more else None)


def keyset_filtered_page(session, query, *, columns, limit: int, cursor: str | None, keep,
                         descending: bool = True, batch: int = 250, max_scanned: int = 5000):
    """`keyset_page` for a condition SQL cannot state: rows are read in order, in batches, and `keep(row)` decides.

    `query` selects plain columns, among them every sort column under its own name; returns (kept rows,
    next_cursor).  A call reads at most `max_scanned` rows.  When that bound stops it, the page may hold fewer
    than `limit` rows and still have a next_cursor: it resumes after the last row read (every row before it was
    judged), so no row is skipped or repeated, and no call reads more than the bound, however long the list.
    """
    keys = [_key(column) for column in columns]
    position = decode_cursor(cursor, keys, descending) if cursor else None
    kept: list = []
    scanned = 0
    while True:
        wanted = min(batch, max_scanned - scanned)
        page_query = query if position is None else query.where(_after(keys, position, descending))
        rows = session.execute(page_query.order_by(*_ordering(keys, descending)).limit(wanted)).all()
        for row in rows:
            scanned += 1
            if keep(row):
                if len(kept) == limit:  # one more than the page: there is a next page, after the last one kept
                    return kept, encode_cursor(keys, descending, kept[-1])
                kept.append(row)
        if len(rows) < wanted:
            return kept, None
        if scanned >= max_scanned:
            return kept, encode_cursor(keys, descending, rows[-1])
        position = [getattr(rows[-1], key.attribute) for key in keys]

"""The portal's CSV import: one request per row, the columns named by the create body's dotted field names.

A row becomes a create body the way the request form does (`forms.body_from_form`):
blank cells are absent, `yes`/`true`/`1`/`x` tick a checkbox column, list columns
(`records.types`, `records.sensitive`, `authorization.specific_consents`,
`patient.other_names`) take several values separated by `;`.  The bodies then go
through the batch path (gateway.batches) and so through the API's own create,
item by item.  What this module refuses is the file itself: not UTF-8 text, no
header, a column it does not know, no row or more than the batch's 1,000.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from gateway.batches.service import MAX_ITEMS
from gateway.portal import forms

LIST_SEPARATOR = ";"
TRUE = frozenset({"yes", "y", "true", "1", "x", "on"})
COLUMNS = ("reference", "facility", *[c for c in forms.TEXT if c != "reference"], *forms.DATES, *forms.FLAGS,
           *forms.LISTS, "patient.other_names")
# The header row of the downloadable template, in the order a person fills a request in.
TEMPLATE_COLUMNS = ("reference", "facility", "pathway", "purpose", "patient.first_name", "patient.last_name",
                    "patient.date_of_birth", "records.types", "records.date_from", "records.date_to",
                    "delivery.method", "delivery.recipient.name", "delivery.recipient.address",
                    "authorization.signed_by", "authorization.signer_name", "authorization.signed_on",
                    "authorization.expires_on", "authorization.discloser", "authorization.recipient",
                    "authorization.information_description", "authorization.purpose_statement",
                    "authorization.statements.right_to_revoke", "authorization.statements.no_conditioning",
                    "authorization.statements.redisclosure")


class CsvRefused(ValueError):
    """The file cannot be read as an import (the message says why, in words)."""


@dataclass(frozen=True)
class Parsed:
    """The create bodies of a file, one per row, in order: spreadsheet row N (the header is row 1) is item N - 2."""

    bodies: list[dict]


class _Row:
    """One row as the request form's parser reads a form: `get` and `getlist`."""

    def __init__(self, cells: dict[str, str]):
        self.cells = cells

    def get(self, name: str, default=None):
        value = self.cells.get(name)
        if value is None:
            return default
        if name in forms.FLAGS:
            return "on" if value.strip().lower() in TRUE else ""
        if name == "patient.other_names":
            return "\n".join(part.strip() for part in value.split(LIST_SEPARATOR))
        return value

    def getlist(self, name: str) -> list[str]:
        return [part.strip() for part in (self.cells.get(name) or "").split(LIST_SEPARATOR) if part.strip()]


def parse(data: bytes, *, practice_required) -> Parsed:
    """The create bodies of a CSV file; CsvRefused when the file as a whole is unusable.

    `practice_required(code)` says whether a facility needs the practice section (the form's rule).
    """
    try:
        text = data.decode("utf-8-sig")  # a spreadsheet's byte-order mark is not part of the first column
    except UnicodeDecodeError:
        raise CsvRefused("The file is not UTF-8 text. Save it from your spreadsheet as “CSV UTF-8”.") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise CsvRefused("The file is empty.") from None
    except csv.Error:
        raise CsvRefused("The file is not valid CSV.") from None
    unknown = [name for name in header if name not in COLUMNS]
    if unknown:
        raise CsvRefused(f"Unknown column(s): {', '.join(sorted(set(unknown))[:10])[:300]}. The column names "
                         "are the create body's field names, such as patient.last_name.")
    if len(set(header)) != len(header):
        raise CsvRefused("A column appears twice in the header.")
    if "reference" not in header:
        raise CsvRefused("The file needs a reference column.")
    rows: list[list[str]] = []
    try:
        for cells in reader:
            if len(rows) > MAX_ITEMS + 100:  # well past the limit, even allowing for trailing blank rows
                break
            rows.append(cells)
    except csv.Error:
        raise CsvRefused(f"The file is not valid CSV (near row {len(rows) + 2}).") from None
    while rows and not any(cell.strip() for cell in rows[-1]):
        rows.pop()  # spreadsheets often end with blank rows; one in the middle stays a row (and is reported)
    if not rows:
        raise CsvRefused("The file has a header but no rows.")
    if len(rows) > MAX_ITEMS:
        raise CsvRefused(f"The file has more than {MAX_ITEMS:,} rows; split it into several files.")
    bodies = []
    for number, cells in enumerate(rows, start=2):  # spreadsheet rows: the header is row 1
        if len(cells) > len(header):
            raise CsvRefused(f"Row {number} has more cells than the header has columns.")
        row = _Row(dict(zip(header, cells, strict=False)))
        body = forms.body_from_form(row, practice_required=practice_required(row.get("facility")))
        bodies.append(forms.drop_blank_required(body))
    return Parsed(bodies)


def template() -> str:
    """A CSV with the header row only, to fill in."""
    out = io.StringIO()
    csv.writer(out).writerow(TEMPLATE_COLUMNS)
    return out.getvalue()

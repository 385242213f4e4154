"""Tolerant reads from a request body, and the patient facts several rules share.

A draft may lack anything, and a property test feeds arbitrary shapes, so every
read here treats a missing key, None, "" and a value of the wrong type alike
(as absent) and never raises.  Rules read the body only through these helpers.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

ADULT_AGE = 18


def as_body(body: Any) -> Mapping:
    """The body itself when it is a mapping, else an empty one."""
    return body if isinstance(body, Mapping) else {}


def get(body: Any, path: str) -> Any:
    """The value at a dotted path, or None when any step is missing or not a mapping."""
    value = body
    for key in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def text(body: Any, path: str) -> str:
    """The stripped string at path; "" for anything that is not a string."""
    value = get(body, path)
    return value.strip() if isinstance(value, str) else ""


def day(body: Any, path: str) -> date | None:
    """The date at path (a date, a datetime's date or an ISO string), else None."""
    return to_date(get(body, path))


def to_date(value: Any) -> date | None:
    """A date from a date, datetime or ISO string; None for anything else."""
    # A datetime is a date subclass but cannot be compared with one, so narrow it first.
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and value.strip():
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


def words(body: Any, path: str) -> tuple[str, ...]:
    """The non-empty stripped strings of the list at path, in order."""
    value = get(body, path)
    if not isinstance(value, list | tuple):
        return ()
    return tuple(item.strip() for item in value if isinstance(item, str) and item.strip())


def flag(body: Any, path: str) -> bool:
    """True only for a real boolean True: a missing or odd value is false."""
    return get(body, path) is True


def age_on(born: date, today: date) -> int:
    """Completed years; a 29 February birthday falls on 1 March in common years."""
    # Comparing (month, day) tuples makes (2, 29) later than (2, 28) and earlier than
    # (3, 1), which is exactly the 1 March convention.
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def is_minor(body: Any, today: date) -> bool:
    """Whether the patient is under 18: the date of birth wins over the `minor` flag."""
    born = day(body, "patient.date_of_birth")
    if born is not None and born <= today:
        return age_on(born, today) < ADULT_AGE
    return flag(body, "patient.minor")


def is_deceased(body: Any) -> bool:
    """Whether the patient is recorded as deceased."""
    return flag(body, "patient.deceased")


def pathway(body: Any) -> str:
    """The request's pathway ("authorization", "subpoena", "court_order" or "")."""
    return text(body, "pathway")


def signed_by_representative(body: Any) -> bool:
    """Whether the authorization says a personal representative signed it."""
    return text(body, "authorization.signed_by") == "representative"


def authority(body: Any) -> str:
    """The representative's kind of authority, or ""."""
    return text(body, "authorization.representative.authority")

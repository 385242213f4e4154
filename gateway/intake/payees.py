"""Who is paid for released records, and where: each facility's payee and mailing address (configuration).

The packaged `payees.json` (keyed by facility code) is read unless the setting GATEWAY_PAYEES_FILE names
another file of the same shape; either is read once per process, on first use, and a malformed entry is
a configuration error raised then, naming the entry.  A facility without an entry is invoiced under its
own name with no mailing address, and its invoice says to ask its records office.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

PAYEES_FILE = "payees.json"


@dataclass(frozen=True)
class Payee:
    """The name checks are payable to, the office that takes them, and its mailing address lines."""

    name: str
    department: str | None
    address: tuple[str, ...]
    phone: str | None = None


def _text(value, where: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"payees: {where} must be non-blank text")
    return value.strip()


def parse_payees(data: dict) -> dict[str, Payee]:
    """Payees by facility code from the decoded JSON document."""
    entries = data.get("payees") if isinstance(data, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise ValueError("payees: the document needs a non-empty `payees` object keyed by facility code")
    payees = {}
    for code, raw in entries.items():
        where = f"payees[{code!r}]"
        if not isinstance(raw, dict):
            raise ValueError(f"payees: {where} must be an object")
        address = raw.get("address")
        if not isinstance(address, list) or not address:
            raise ValueError(f"payees: {where}.address must be a list of lines")
        payees[code] = Payee(name=_text(raw.get("name"), f"{where}.name"),
                             department=_text(raw.get("department"), f"{where}.department", optional=True),
                             address=tuple(_text(line, f"{where}.address") for line in address),
                             phone=_text(raw.get("phone"), f"{where}.phone", optional=True))
    return payees


@lru_cache(maxsize=4)
def load_payees(path: str | None = None) -> dict[str, Payee]:
    """The payees from `path`, or the ones packaged with gateway.intake (read once per path)."""
    if path is None:
        text = resources.files(__package__).joinpath(PAYEES_FILE).read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    return parse_payees(json.loads(text))


def payee_for(facility_code: str, facility_name: str, *, path: str | None = None) -> Payee:
    """The facility's payee; without an entry, the facility itself with no address."""
    return load_payees(path).get(facility_code) or Payee(name=facility_name, department=None, address=())

"""The one registry of rules, and check_request which runs them all.

A rule is a pure function `(body, ctx) -> Iterable[FieldError]` registered with
the codes it may produce.  Adding a rule is one decorated function plus its
tests; the package `__init__` imports the rule modules.  Findings come out in
catalogue (RULES.md) order, so the order never depends on which module
registered first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.errors import FieldError
from gateway.intake.rules.catalogue import CATALOGUE
from gateway.intake.rules.context import RuleContext
from gateway.intake.rules.facts import as_body

Check = Callable[[Mapping, RuleContext], Iterable[FieldError]]


@dataclass(frozen=True)
class Rule:
    """A registered rule: its name, the codes it may produce and the check itself."""

    name: str
    codes: tuple[str, ...]
    check: Check


REGISTRY: list[Rule] = []
_POSITION = {code: index for index, code in enumerate(CATALOGUE)}


def rule(*codes: str) -> Callable[[Check], Check]:
    """Register a rule producing the given catalogue codes."""
    unknown = [code for code in codes if code not in CATALOGUE]
    if not codes or unknown:
        # A typo here would silently invent an undocumented code; refuse it at import.
        raise ValueError(f"rule codes must be catalogue codes: {unknown or 'none given'}")

    def register(check: Check) -> Check:
        REGISTRY.append(Rule(name=check.__name__, codes=codes, check=check))
        return check

    return register


def finding(code: str, field: str, message: str | None = None) -> FieldError:
    """A deficiency with the catalogue's citation and (unless given) its default message."""
    info = CATALOGUE[code]
    return FieldError(code=code, field=field, message=message or info.message, rule=info.citation)


def check_request(body: Any, ctx: RuleContext) -> list[FieldError]:
    """Every deficiency of the request, in catalogue order, each reported once."""
    body = as_body(body)
    seen: set[FieldError] = set()
    found: list[FieldError] = []
    for registered in REGISTRY:
        for error in registered.check(body, ctx):
            if error not in seen:
                seen.add(error)
                found.append(error)
    # sorted() is stable: several findings of one code keep the order their rule gave them.
    return sorted(found, key=lambda error: _POSITION[error.code])

"""Loading the packaged release-of-information policy (fee schedules, holidays) from JSON.

Called by the composition root once, never at import time; a malformed file is
a configuration error and raises ValueError naming the entry, not the request.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

from gateway.intake.rules.context import FEE_BASIS, FeeSchedule, FeeTier, Policy

POLICY_FILE = "policy.json"


def _date(value: Any, where: str) -> date:
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"policy: {where} is not an ISO date") from exc


def _money(value: Any, where: str) -> Decimal:
    # Strings only: a JSON number would pass through float and lose the cent.
    if not isinstance(value, str):
        raise ValueError(f"policy: {where} must be a decimal string")
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:
        raise ValueError(f"policy: {where} is not a decimal") from exc
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"policy: {where} must be a non-negative amount")
    return amount


def _tier(raw: dict, where: str) -> FeeTier:
    to_page = raw.get("to_page")
    if not isinstance(raw.get("from_page"), int) or not (to_page is None or isinstance(to_page, int)):
        raise ValueError(f"policy: {where} needs integer from_page and integer or null to_page")
    return FeeTier(from_page=raw["from_page"], to_page=to_page, rate=_money(raw.get("rate"), f"{where}.rate"))


def _schedule(raw: dict, index: int) -> FeeSchedule:
    where = f"fee_schedules[{index}]"
    tiers = tuple(_tier(t, f"{where}.tiers[{i}]") for i, t in enumerate(raw.get("tiers") or ()))
    return FeeSchedule(effective_on=_date(raw.get("effective_on"), f"{where}.effective_on"),
                       base=_money(raw.get("base"), f"{where}.base"), tiers=tiers,
                       basis=raw.get("basis") or FEE_BASIS)


def parse_policy(data: dict) -> Policy:
    """A Policy from the decoded JSON document."""
    schedules = tuple(_schedule(raw, i) for i, raw in enumerate(data.get("fee_schedules") or ()))
    if not schedules:
        raise ValueError("policy: at least one fee schedule is required")
    holidays = frozenset(_date(h.get("date") if isinstance(h, dict) else h, f"holidays[{i}]")
                         for i, h in enumerate(data.get("holidays") or ()))
    return Policy(fee_schedules=tuple(sorted(schedules, key=lambda s: s.effective_on)), holidays=holidays)


def load_policy(path: str | Path | None = None) -> Policy:
    """The policy from `path`, or the one packaged with gateway.intake.rules."""
    if path is None:
        text = resources.files(__package__).joinpath(POLICY_FILE).read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    return parse_policy(json.loads(text))

"""The fee estimate of RULES.md §8 (M.G.L. c.111 §70): an estimate only; staff set the invoice.

Money is Decimal throughout and leaves as strings ("28.69"), never float.  The
schedule is the latest one in force on ctx.today.  Without a page count the
amount is the base fee and `per_page` states the formula; a no-charge
estimate has amount "0.00" and no per-page rates, since nothing will be charged.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from gateway.intake.rules.context import FeeSchedule, FeeTier, Policy, RuleContext
from gateway.intake.rules.facts import as_body, flag, text

CURRENCY = "USD"
CENT = Decimal("0.01")
ZERO = Decimal("0")

_PROVIDER_DIRECT = "No fee: the records go directly to another healthcare provider (delivery method provider_direct)."
_CONTINUITY = "No fee: the records are for continuity of care by another healthcare provider."
_SOCIAL_SECURITY = "No fee: the records support a claim or appeal under the Social Security Act."
_PUBLIC_BENEFIT = ("No fee: the records support a disability claim or appeal under the Social Security Act or a "
                   "needs-based benefit program.")
_WAIVER = "A fee waiver for financial hardship was requested; records staff will review it."


def schedule_on(policy: Policy, on: date) -> FeeSchedule:
    """The latest schedule effective on or before `on` (the earliest one before any took effect)."""
    schedules = sorted(policy.fee_schedules, key=lambda s: s.effective_on)
    if not schedules:
        raise ValueError("the policy has no fee schedule")  # a configuration error, not a request's
    in_force = [s for s in schedules if s.effective_on <= on]
    # Before the first schedule there is no better figure than the oldest one we know.
    return in_force[-1] if in_force else schedules[0]


def page_tiers(schedule: FeeSchedule, pages: int) -> list[tuple[FeeTier, int]]:
    """How many of `pages` pages fall in each tier of the schedule, tier by tier (in page order)."""
    counted = []
    for tier in sorted(schedule.tiers, key=lambda t: t.from_page):
        last = pages if tier.to_page is None else min(pages, tier.to_page)
        counted.append((tier, max(0, last - tier.from_page + 1)))
    return counted


def page_charge(schedule: FeeSchedule, pages: int) -> Decimal:
    """The per-page part of the fee for `pages` pages, tier by tier."""
    return sum((tier.rate * count for tier, count in page_tiers(schedule, pages)), ZERO)


def round_money(amount: Decimal) -> Decimal:
    """An amount rounded half-up to the cent."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def _money(amount: Decimal) -> str:
    return str(round_money(amount))


def _rate(rate: Decimal) -> str:
    # Published rates are whole cents; keep any finer rate exactly rather than round it away.
    return _money(rate) if rate == rate.quantize(CENT) else str(rate)


def per_page(schedule: FeeSchedule) -> list[dict]:
    """The schedule's tiers in the wire shape; an open-ended tier has no "to"."""
    tiers = []
    for tier in sorted(schedule.tiers, key=lambda t: t.from_page):
        entry: dict[str, Any] = {"from": tier.from_page}
        if tier.to_page is not None:
            entry["to"] = tier.to_page
        entry["rate"] = _rate(tier.rate)
        tiers.append(entry)
    return tiers


def no_charge_reason(body: Mapping) -> str | None:
    """Why §70 allows no fee for this request, or None when a fee applies."""
    purpose = text(body, "purpose")
    if text(body, "delivery.method") == "provider_direct":
        return _PROVIDER_DIRECT
    if purpose == "continuity_of_care":
        return _CONTINUITY
    if purpose == "social_security_benefits":
        return _SOCIAL_SECURITY
    if purpose == "disability_determination" and flag(body, "public_benefit_claim"):
        return _PUBLIC_BENEFIT
    return None


def _page_count(pages: Any) -> int | None:
    # bool is an int subclass; True pages is a caller's bug, not one page.
    if isinstance(pages, bool) or not isinstance(pages, int):
        return None
    return max(0, pages)


def fee_estimate(body: Any, ctx: RuleContext, pages: int | None = None) -> dict:
    """The §8 estimate: amount, per-page formula, basis, status and reason."""
    body = as_body(body)
    schedule = schedule_on(ctx.policy, ctx.today)
    reason = no_charge_reason(body)
    if reason:
        return {"amount": _money(ZERO), "currency": CURRENCY, "per_page": [], "basis": schedule.basis,
                "status": "no_charge", "reason": reason}
    count = _page_count(pages)
    amount = schedule.base + (page_charge(schedule, count) if count is not None else ZERO)
    waiver = flag(body, "fee_waiver_requested")
    return {"amount": _money(amount), "currency": CURRENCY, "per_page": per_page(schedule), "basis": schedule.basis,
            "status": "waiver_pending" if waiver else "estimated", "reason": _WAIVER if waiver else None}


def invoice_lines(schedule: FeeSchedule, pages: int) -> tuple[list[dict], Decimal]:
    """An invoice's lines for `pages` pages under `schedule` (the base charge, then each tier used) and their total.

    Each line is rounded to the cent and the total is the sum of the lines, so the lines always add up
    (with the published whole-cent rates this is exactly the §8 formula).
    """
    lines = [_line("Base charge", 1, schedule.base)]
    for tier, count in page_tiers(schedule, pages):
        if count:
            label = f"Pages {tier.from_page} and above" if tier.to_page is None else \
                f"Pages {tier.from_page}–{tier.to_page}"
            lines.append(_line(label, count, tier.rate))
    return lines, sum((Decimal(line["amount"]) for line in lines), ZERO)


def _line(label: str, quantity: int, rate: Decimal) -> dict:
    return {"label": label, "quantity": quantity, "rate": _rate(rate), "amount": _money(rate * quantity)}


def money(amount: Decimal) -> str:
    """An amount as the API writes money: a decimal string to the cent ("228.57")."""
    return _money(amount)

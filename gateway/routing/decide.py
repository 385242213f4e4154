"""Where a submitted request goes: routing rules from configuration (routes.json), not code.

Subpoenas and court orders go to `legal-review` first (RULES.md §5), requests
touching specially protected information to `sensitive-review` (§6), all
others straight to `facility.<code>`.  Continuity-of-care requests from
providers go to the front of their queue.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from gateway.routing.queues import facility_queue


@dataclass(frozen=True)
class RoutingDecision:
    """The first queue of a request, and whether it jumps the line."""

    queue: str
    at_front: bool
    final_queue: str  # the facility queue the request reaches after any review


@lru_cache(maxsize=1)
def routes() -> dict:
    """The packaged routing rules."""
    return json.loads(resources.files("gateway.routing").joinpath("routes.json").read_text())


def _matches(when: dict, facts: dict) -> bool:
    for name, expected in when.items():
        value = facts.get(name)
        if isinstance(expected, list):
            if value not in expected:
                return False
        elif value != expected:
            return False
    return True


def decide(*, facility: str, pathway: str, purpose: str, sensitive: list[str], records_types: list[str],
           org_kind: str, config: dict | None = None) -> RoutingDecision:
    """Apply the routing rules to a request's routing facts (ids and codes only, no PHI)."""
    config = config or routes()
    facts = {"facility": facility, "pathway": pathway, "purpose": purpose, "org_kind": org_kind,
             "any_sensitive": bool(sensitive) or "psychotherapy_notes" in records_types}
    final = facility_queue(facility)
    first = next((rule["queue"] for rule in config["review_before_facility"] if _matches(rule["when"], facts)), final)
    at_front = any(_matches(rule["when"], facts) for rule in config["at_front"])
    return RoutingDecision(queue=first, at_front=at_front, final_queue=final)


def decide_for(req, org_kind: str) -> RoutingDecision:
    """The decision for a stored request."""
    return decide(facility=req.facility, pathway=req.pathway, purpose=req.purpose,
                  sensitive=list((req.records or {}).get("sensitive") or []),
                  records_types=list((req.records or {}).get("types") or []), org_kind=org_kind)

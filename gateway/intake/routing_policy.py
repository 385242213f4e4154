"""Where a submitted request goes: its path through the review queues to its facility's queue.

The policy is configuration (routes.json), not code.  Every matching review
applies, in the file's order: a subpoena for mental-health records passes
legal review, then sensitive review, then reaches the facility.  The path is a
function of facts that cannot change once a request is submitted (facility,
pathway; the records asked for change only while it is back with the
requester, and a resubmission routes it again), so each step can recompute it.
Queue names carry ids and codes only, never PHI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

LEGAL_REVIEW = "legal-review"
SENSITIVE_REVIEW = "sensitive-review"
REVIEW_QUEUES = (LEGAL_REVIEW, SENSITIVE_REVIEW)


def facility_queue(code: str) -> str:
    """The queue a facility's routed work lands on."""
    return f"facility.{code}"


@dataclass(frozen=True)
class Route:
    """A request's queues in order (reviews, then the facility's), and whether it jumps the line."""

    path: tuple[str, ...]
    at_front: bool

    @property
    def first(self) -> str:
        """The queue a submission enters."""
        return self.path[0]

    def after(self, queue: str | None) -> str | None:
        """The queue that follows `queue` on the path (None after the facility queue or off the path)."""
        if queue not in self.path:
            return None
        index = self.path.index(queue)
        return self.path[index + 1] if index + 1 < len(self.path) else None


@lru_cache(maxsize=1)
def routes() -> dict:
    """The packaged routing policy."""
    return json.loads(resources.files("gateway.intake").joinpath("routes.json").read_text())


def _matches(when: dict, facts: dict) -> bool:
    for name, expected in when.items():
        value = facts.get(name)
        if isinstance(expected, list):
            if value not in expected:
                return False
        elif value != expected:
            return False
    return True


def route(*, facility: str, pathway: str, purpose: str, sensitive: list[str], records_types: list[str],
          org_kind: str, config: dict | None = None) -> Route:
    """Apply the policy to a request's routing facts (ids and codes only, no PHI)."""
    config = config or routes()
    facts = {"facility": facility, "pathway": pathway, "purpose": purpose, "org_kind": org_kind,
             "any_sensitive": bool(sensitive) or "psychotherapy_notes" in records_types}
    reviews = tuple(rule["queue"] for rule in config["reviews"] if _matches(rule["when"], facts))
    at_front = any(_matches(rule["when"], facts) for rule in config["at_front"])
    return Route(path=(*dict.fromkeys(reviews), facility_queue(facility)), at_front=at_front)


def route_for(req, org_kind: str) -> Route:
    """The route of a stored request."""
    return route(facility=req.facility, pathway=req.pathway, purpose=req.purpose,
                 sensitive=list((req.records or {}).get("sensitive") or []),
                 records_types=list((req.records or {}).get("types") or []), org_kind=org_kind)

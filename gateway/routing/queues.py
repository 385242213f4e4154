"""Names of the RQ queues, derived from facility codes and the review steps (RULES.md §5, §6)."""

from __future__ import annotations

LEGAL_REVIEW = "legal-review"
SENSITIVE_REVIEW = "sensitive-review"
# Housekeeping jobs (staging sweeps, webhook deliveries) that belong to no facility.
MAINTENANCE = "gateway"


def facility_queue(code: str) -> str:
    """The queue a facility's routed work lands on."""
    return f"facility.{code}"


def all_queues(facility_codes: list[str]) -> list[str]:
    """Every queue a catch-all worker listens to, review queues first."""
    return [LEGAL_REVIEW, SENSITIVE_REVIEW, *(facility_queue(c) for c in facility_codes), MAINTENANCE]

"""The RQ queues workers listen to: the facilities' and review queues (named by intake's routing policy),
and the gateway's own housekeeping queue."""

from __future__ import annotations

from gateway.intake.routing_policy import LEGAL_REVIEW, SENSITIVE_REVIEW, facility_queue

# Housekeeping jobs (staging sweeps, webhook deliveries) that belong to no facility.
MAINTENANCE = "gateway"


def all_queues(facility_codes: list[str]) -> list[str]:
    """Every queue a catch-all worker listens to, review queues first."""
    return [LEGAL_REVIEW, SENSITIVE_REVIEW, *(facility_queue(c) for c in facility_codes), MAINTENANCE]

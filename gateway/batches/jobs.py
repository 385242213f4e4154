"""The batch job: a plain function of the batch id, on the worker's runtime (gateway.runtime)."""

from __future__ import annotations

import logging

log = logging.getLogger("gateway.batches.jobs")


def process_batch(batch_id: str) -> dict:
    """RQ entry point: create the batch's items; safe to run again (it resumes, never creates twice)."""
    from gateway.batches.service import process
    from gateway.runtime import runtime

    rt = runtime()
    outcome = process(rt.db, batch_id=batch_id, secret_key=rt.settings.secret_key)
    log.info("batch processed", extra={"batch_id": batch_id, "created": outcome.created,
                                       "rejected": outcome.rejected, "skipped": outcome.skipped})
    return {"created": outcome.created, "rejected": outcome.rejected, "skipped": outcome.skipped}

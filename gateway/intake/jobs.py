"""Housekeeping jobs of intake: plain functions, safe to run any number of times."""

from __future__ import annotations

import logging
from datetime import timedelta

from gateway import idempotency
from gateway.adapters import build_store
from gateway.db import Database
from gateway.settings import Settings

log = logging.getLogger("gateway.intake.jobs")

# Longer than any upload can take: a staging object this old belongs to a process that died.
STAGING_GRACE = timedelta(hours=6)


def sweep_orphans(settings: Settings | None = None, *, store=None, db: Database | None = None,
                  older_than: timedelta = STAGING_GRACE) -> dict:
    """Remove staging objects and multipart uploads left by killed processes; purge expired idempotency keys.

    As a job (no arguments) it runs on the worker's runtime; the CLI passes its own settings and database."""
    if settings is None:
        from gateway.runtime import runtime

        rt = runtime()
        settings, store, db = rt.settings, store or rt.store, db or rt.db
    store = store or build_store(settings)
    db = db or Database.from_settings(settings)
    removed = store.sweep_staging(older_than)
    purged = idempotency.purge_expired(db)
    log.info("swept orphaned uploads", extra={"staging_removed": removed, "idempotency_purged": purged})
    return {"staging_removed": removed, "idempotency_purged": purged}


def close_stale_work() -> dict:
    """The daily stale-work sweep (gateway.intake.stale) on the worker's runtime: its clock says when "now" is."""
    from gateway.intake.stale import StalePolicy, sweep
    from gateway.runtime import runtime

    rt = runtime()
    result = sweep(rt.db, clock=rt.clock, policy=StalePolicy.from_settings(rt.settings))
    log.info("stale work swept", extra={"warned": len(result.warned), "closed": len(result.closed)})
    return {"warned": len(result.warned), "closed": len(result.closed)}


def read_document(document_id: str) -> str | None:
    """RQ entry point: OCR one signed form still pending and record its reading once (gateway.intake.readings)."""
    from gateway.intake.readings import ReadingService
    from gateway.intake.readings import read_document as read
    from gateway.runtime import runtime

    rt = runtime()
    status = read(rt.db, store=rt.store, reader=rt.reader(), thresholds=ReadingService.thresholds_of(rt.settings),
                  document_id=document_id)
    log.info("document read", extra={"document_id": document_id, "reading": status})
    return status

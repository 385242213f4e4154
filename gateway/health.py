"""Liveness, readiness and metrics endpoints.

`/readyz` asks every dependency at once (database, Redis, S3, clamd) with short
timeouts and answers 503 naming whatever is down, so a load balancer stops
sending uploads to an instance that could not scan or store them.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from flask import Response, current_app
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from gateway.errors import ServiceUnavailable
from gateway.web import adapters

blp = Blueprint("health", __name__, description="Health, readiness and metrics.")

_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="readyz")


class HealthSchema(Schema):
    status = fields.String(metadata={"example": "ok"})


class CheckSchema(Schema):
    ok = fields.Boolean()
    seconds = fields.Float()
    error = fields.String()
    engine = fields.String()
    signature_version = fields.String()
    signature_date = fields.String()


class ReadinessSchema(Schema):
    status = fields.String(metadata={"example": "ready"})
    checks = fields.Dict(keys=fields.String(), values=fields.Nested(CheckSchema))


def _check_database(a):
    a.db.ping()
    return {}


def _check_redis(a):
    a.redis.ping()
    return {}


def _check_s3(a):
    a.store.ping()
    return {}


def _check_clamd(a):
    info = a.scanner.info()
    return {"engine": info.engine, "signature_version": info.signature_version,
            "signature_date": info.signature_date}


CHECKS = {"database": _check_database, "redis": _check_redis, "s3": _check_s3, "clamd": _check_clamd}


def _timed(check, a):
    started = time.perf_counter()
    try:
        details = check(a)
        result = {"ok": True, **{k: v for k, v in details.items() if v is not None}}
    except Exception as error:  # any failure means "not ready"; the type says which kind
        result = {"ok": False, "error": type(error).__name__}
    result["seconds"] = round(time.perf_counter() - started, 4)
    return result


def readiness(a) -> dict[str, dict]:
    """Run every dependency check concurrently and return their results by name."""
    futures = {name: _POOL.submit(_timed, check, a) for name, check in CHECKS.items()}
    return {name: future.result() for name, future in futures.items()}


@blp.route("/healthz")
@blp.response(200, HealthSchema)
def healthz():
    """The process is alive (no dependencies checked)."""
    return {"status": "ok"}


@blp.route("/readyz")
@blp.response(200, ReadinessSchema)
@blp.alt_response(503, description="A dependency is down; `unavailable` names it.")
def readyz():
    """Database, Redis, S3 and clamd reachable; includes the scanner engine and signature version."""
    checks = readiness(adapters())
    down = sorted(name for name, result in checks.items() if not result["ok"])
    if down:
        raise ServiceUnavailable(f"Not ready: {', '.join(down)} unavailable.", code="NOT_READY",
                                 retry_after=10, unavailable=down, checks=checks)
    return {"status": "ready", "checks": checks}


@blp.route("/metrics")
@blp.doc(responses={200: {"description": "Prometheus text format",
                          "content": {"text/plain": {"schema": {"type": "string"}}}}})
def metrics():
    """Prometheus metrics."""
    return Response(current_app.extensions["gateway.metrics"].render(),
                    mimetype="text/plain", headers={"Content-Type": "text/plain; version=0.0.4"})

"""The adapters one gateway process uses, built once from Settings.

This is where vendor clients (redis, boto3, clamd) are constructed; services
receive the small protocols (`Scanner`, `DocumentStore`) and never build them.
Constructing a client opens no connection: nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from gateway.clock import Clock, SystemClock
from gateway.db import Database
from gateway.mail.smtp import SmtpMailer
from gateway.scanning import ClamdScanner, Scanner
from gateway.settings import Settings
from gateway.storage import DocumentStore, S3CheckpointStore, S3DocumentStore


@dataclass
class Adapters:
    """Everything outside the process that the gateway talks to."""

    settings: Settings
    db: Database
    redis: redis.Redis
    scanner: Scanner
    store: DocumentStore
    clock: Clock
    # Reads signed authorizations (gateway/reading); None when GATEWAY_READING_ENABLED is off.
    reader: object | None = None


def build_redis(settings: Settings) -> redis.Redis:
    """A Redis client with short timeouts, so a dead Redis fails fast instead of hanging requests."""
    return redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=5,
                                health_check_interval=30)


def _s3_credentials(settings: Settings) -> tuple[str | None, str | None]:
    # A local endpoint (moto) gets throwaway credentials if none are set; AWS uses boto3's own chain.
    access_key, secret_key = settings.aws_access_key_id, settings.aws_secret_access_key
    if settings.s3_endpoint_url and not access_key:
        access_key, secret_key = "testing", "testing"
    return access_key, secret_key


def build_store(settings: Settings) -> S3DocumentStore:
    """The S3 document store; a local endpoint gets moto's throwaway credentials if none are set."""
    access_key, secret_key = _s3_credentials(settings)
    return S3DocumentStore.build(
        endpoint_url=settings.s3_endpoint_url, region=settings.s3_region,
        bucket=settings.s3_bucket, kms_key_id=settings.kms_key_id,
        access_key=access_key, secret_key=secret_key,
        connect_timeout=settings.storage_timeout, read_timeout=settings.storage_timeout * 3,
    )


def build_checkpoint_store(settings: Settings) -> S3CheckpointStore:
    """The Object Lock bucket holding the audit trail's signed checkpoints (the relay and the CLI use it)."""
    access_key, secret_key = _s3_credentials(settings)
    return S3CheckpointStore.build(
        endpoint_url=settings.s3_endpoint_url, region=settings.s3_region,
        bucket=settings.audit_checkpoint_bucket, retention_days=settings.audit_checkpoint_retention_days,
        access_key=access_key, secret_key=secret_key,
        connect_timeout=settings.storage_timeout, read_timeout=settings.storage_timeout * 3,
    )


def build_mailer(settings: Settings) -> SmtpMailer:
    """The SMTP mailer of the settings (workers only: no web request ever sends mail)."""
    return SmtpMailer.from_settings(settings)


def build_reader(settings: Settings):
    """The form reader (pypdf and Tesseract), or None when reading is turned off."""
    if not settings.reading_enabled:
        return None
    from gateway.reading import TesseractReader

    return TesseractReader.from_settings(settings)


def build_adapters(settings: Settings, **overrides) -> Adapters:
    """Build every adapter from settings; tests may override any of them by name."""
    parts = {
        "db": overrides.pop("db", None) or Database.from_settings(settings),
        "redis": overrides.pop("redis", None) or build_redis(settings),
        "scanner": overrides.pop("scanner", None)
        or ClamdScanner(list(settings.clamd_addresses), timeout=settings.clamd_timeout),
        "store": overrides.pop("store", None) or build_store(settings),
        "clock": overrides.pop("clock", None) or SystemClock.from_settings(settings),
        "reader": overrides.pop("reader", None) or build_reader(settings),
    }
    if overrides:
        raise TypeError(f"unknown adapters: {sorted(overrides)}")
    return Adapters(settings=settings, **parts)

"""The worker runtime: what jobs run on (settings, database, clock, mailer), built once per process.

Jobs are plain functions of ids; they take their dependencies from
`runtime()` instead of building engines and clients themselves.  The first
job in a process builds it from the environment; a process that already has
the pieces (a test, a CLI command) installs its own with `install`, which is
also how tests freeze the clock or catch the mail.  `gateway worker` builds
it before its first job and runs jobs in its own process (no work horse per
job, see gateway.routing.workers), so "once per process" really is once per
worker: the engine's pool, the S3 client's connections and the webhook sender
are reused by every job.  Nothing here opens a connection while being built.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from gateway.clock import Clock, SystemClock
from gateway.db import Database
from gateway.mail.mailer import Mailer
from gateway.settings import Settings

_lock = threading.Lock()
_process: dict[str, Runtime] = {}  # "current": this process's runtime, once built or installed


@dataclass
class Runtime:
    """The adapters a job may use."""

    settings: Settings
    db: Database
    clock: Clock
    mailer: Mailer
    store: Any = None  # DocumentStore (S3)
    scanner: Any = None  # Scanner (clamd)
    sender: Any = None  # the webhook Sender (facility webhook sinks); stateless, shared by every job
    _reader: Any = None  # built on first use: only the reading job needs Tesseract

    def reader(self):
        """The form reader (pypdf and Tesseract), built once, whatever GATEWAY_READING_ENABLED says: a job
        enqueued before reading was turned off still finishes."""
        if self._reader is None:
            from gateway.reading import TesseractReader

            self._reader = TesseractReader.from_settings(self.settings)
        return self._reader

    @classmethod
    def from_settings(cls, settings: Settings, **overrides) -> Runtime:
        """Build every part from settings; tests may pass any part by name."""
        from gateway import models  # noqa: F401  (every table, so foreign keys across domains resolve in a job)
        from gateway.adapters import build_mailer, build_store
        from gateway.scanning import ClamdScanner
        from gateway.webhooks.sender import Sender

        parts = {"db": overrides.pop("db", None) or Database.from_settings(settings),
                 "clock": overrides.pop("clock", None) or SystemClock.from_settings(settings),
                 "mailer": overrides.pop("mailer", None) or build_mailer(settings),
                 "store": overrides.pop("store", None) or build_store(settings),
                 "scanner": overrides.pop("scanner", None)
                 or ClamdScanner(list(settings.clamd_addresses), timeout=settings.clamd_timeout),
                 "sender": overrides.pop("sender", None) or Sender.from_settings(settings)}
        if overrides:
            raise TypeError(f"unknown runtime parts: {sorted(overrides)}")
        return cls(settings=settings, **parts)

    def close(self) -> None:
        """Give back the database connections (a worker's warm shutdown, a test's teardown)."""
        self.db.dispose()


def runtime() -> Runtime:
    """This process's runtime, built from the environment on first use."""
    with _lock:
        if "current" not in _process:
            _process["current"] = Runtime.from_settings(Settings.from_env())
        return _process["current"]


def install(rt: Runtime | None) -> Runtime | None:
    """Make `rt` this process's runtime (None forgets it); returns the one it replaces."""
    with _lock:
        previous = _process.pop("current", None)
        if rt is not None:
            _process["current"] = rt
        return previous

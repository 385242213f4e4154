"""The worker runtime: what jobs run on (settings, database, clock, mailer), built once per process.

Jobs are plain functions of ids; they take their dependencies from
`runtime()` instead of building engines and clients themselves.  The first
job in a process builds it from the environment; a process that already has
the pieces (a test, a CLI command) installs its own with `install`, which is
also how tests freeze the clock or catch the mail.  RQ's default worker runs
each job in a forked work horse, so there "once per process" is once per job
until workers stop forking (issue 18).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

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
    # Built on first use: only the jobs that read stored documents need them.
    _store: object | None = None
    _reader: object | None = None

    def store(self):
        """The document store (S3), built once."""
        if self._store is None:
            from gateway.adapters import build_store

            self._store = build_store(self.settings)
        return self._store

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
        from gateway.adapters import build_mailer

        parts = {"db": overrides.pop("db", None) or Database.from_settings(settings),
                 "clock": overrides.pop("clock", None) or SystemClock.from_settings(settings),
                 "mailer": overrides.pop("mailer", None) or build_mailer(settings)}
        if overrides:
            raise TypeError(f"unknown runtime parts: {sorted(overrides)}")
        return cls(settings=settings, **parts)


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

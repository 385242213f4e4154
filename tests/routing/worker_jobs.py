"""Jobs for the worker-model tests (imported by `gateway worker` subprocesses through PYTHONPATH)."""

from __future__ import annotations

import os
import time


def pid() -> int:
    """The process the job ran in."""
    return os.getpid()


def sleep(seconds: float) -> str:
    """A job that outlives its timeout."""
    time.sleep(seconds)
    return "woke"


def fail() -> None:
    """A job that raises."""
    raise RuntimeError("this job fails on purpose")


def crash() -> None:
    """A job that takes its process down (as a segfault in a C extension would)."""
    os._exit(3)


def crash_once(marker: str) -> str:
    """A job whose first run takes its process down; a retry (by another worker) finishes it."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(3)
    return "recovered"

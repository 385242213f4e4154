"""What every local server process shares: start once, stop, kill, restart on the same port, clean up.

Children stay in the caller's process group (a timeout or Ctrl-C that ends a
test run ends them too) and are terminated at interpreter exit if nobody
called stop().
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import weakref
from pathlib import Path
from typing import Self

from infra.localstack.ports import find_free_port

STOP_TIMEOUT_SECONDS = 10.0


def terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it does not go in time."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_SECONDS)


class ChildServer:
    """A server run as our child on 127.0.0.1; subclasses give its command and readiness check."""

    workdir_prefix = "server-"

    def __init__(self, port: int | None = None, workdir: str | Path | None = None) -> None:
        self.port = port if port is not None else find_free_port()
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix=self.workdir_prefix))
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None

    def command(self) -> list[str]:
        """The argv that runs the server in the foreground."""
        raise TypeError(f"{type(self).__name__} must say how it is started")

    def _answers(self) -> bool:
        """Whether the server answers its protocol's trivial request."""
        raise TypeError(f"{type(self).__name__} must say how readiness is checked")

    def _before_start(self) -> None:
        """Checks to make before spawning (e.g. the port is free)."""

    def _wait_until_ready(self) -> None:
        """Block until the server answers; raise if it exits or times out."""
        raise TypeError(f"{type(self).__name__} must say how it becomes ready")

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def is_running(self) -> bool:
        """True if our child is alive and answering."""
        return self._process is not None and self._process.poll() is None and self._answers()

    def start(self) -> Self:
        """Start the server (no-op if running) and wait until it answers."""
        if self._process is not None and self._process.poll() is None:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._before_start()
        # Output is discarded: moto's request log, for one, contains presigned URLs.
        self._process = subprocess.Popen(self.command(), cwd=self.workdir, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._finalizer = weakref.finalize(self, terminate, self._process)
        self._wait_until_ready()
        return self

    def stop(self) -> None:
        """Stop gracefully (SIGTERM, then SIGKILL); in-memory state is lost."""
        process, self._process = self._process, None
        if self._finalizer is not None:
            self._finalizer.detach()
        if process is not None:
            terminate(process)

    def kill(self) -> None:
        """Kill abruptly (SIGKILL), as a crash would."""
        process, self._process = self._process, None
        if self._finalizer is not None:
            self._finalizer.detach()
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_SECONDS)

    def restart(self) -> Self:
        """Stop and start again on the same port, with empty state."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop and remove a workdir this object created."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

"""A moto S3/KMS server as a child process, for integration tests and the dev stack.

moto keeps everything in memory: ``stop``/``kill`` followed by ``start`` or
``restart`` comes back on the same port with no buckets, keys or objects, so
callers re-run the bucket bootstrap after a restart. Any credentials are
accepted; clients pass dummy ones explicitly rather than reading ~/.aws.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path
from typing import Self

from infra.localstack.ports import find_free_port

STARTUP_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0


def moto_server_executable() -> str:
    """Return the moto_server script installed next to the running interpreter."""
    # Not resolving symlinks on purpose: a venv's bin/python is a symlink to
    # the base interpreter, but the venv's scripts sit next to the link.
    candidate = Path(sys.executable).parent / "moto_server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("moto_server")
    if found is None:
        raise FileNotFoundError("moto_server not found; install moto[server] in this environment")
    return found


def _port_is_free(port: int) -> bool:
    # SO_REUSEADDR: connections of our own previous run lingering in TIME_WAIT
    # must not count as "taken"; only a listening socket does.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_SECONDS)


class MotoServerProcess:
    """``moto_server -H 127.0.0.1 -p PORT`` under our control (in-memory state)."""

    def __init__(self, port: int | None = None, workdir: str | Path | None = None) -> None:
        self.port = port if port is not None else find_free_port()
        self._own_workdir = workdir is None
        self.workdir = (
            Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="moto-"))
        )
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None

    @property
    def endpoint_url(self) -> str:
        """The HTTP endpoint S3 and KMS clients should use."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def is_running(self) -> bool:
        """True if our child process is alive and answering HTTP."""
        return self._process is not None and self._process.poll() is None and self._answers()

    def start(self) -> Self:
        """Start the server (no-op if running) and wait until it answers HTTP."""
        if self._process is not None and self._process.poll() is None:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Another server already listening would answer our readiness probe
        # while moto fails to bind, so refuse up front.
        if not _port_is_free(self.port):
            raise RuntimeError(f"port {self.port} is already in use")
        # moto's request log includes full URLs, presigned query strings among
        # them; it is discarded rather than written anywhere.
        self._process = subprocess.Popen(
            [moto_server_executable(), "-H", "127.0.0.1", "-p", str(self.port)],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Same process group as the caller (a timeout or Ctrl-C that ends the
        # test run ends the server too), and terminated at interpreter exit
        # if nobody called stop().
        self._finalizer = weakref.finalize(self, _terminate, self._process)
        self._wait_until_ready()
        return self

    def stop(self) -> None:
        """Terminate the server gracefully (SIGTERM, then SIGKILL); state is lost."""
        process, self._process = self._process, None
        if self._finalizer is not None:
            self._finalizer.detach()
        if process is not None:
            _terminate(process)

    def kill(self) -> None:
        """Kill the server abruptly (SIGKILL), as a crash would."""
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
        """Stop the server and remove a workdir this object created."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint_url + "/moto-api/", timeout=1.0):
                return True
        except urllib.error.HTTPError:
            return True  # any HTTP status means the server is up
        except (urllib.error.URLError, OSError):
            return False

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            assert self._process is not None
            code = self._process.poll()
            if code is not None:
                self._process = None
                raise RuntimeError(
                    f"moto_server exited with status {code} (is port {self.port} taken?)"
                )
            if self._answers():
                return
            time.sleep(0.05)
        self.kill()
        raise TimeoutError(
            f"moto_server did not answer on port {self.port} within {STARTUP_TIMEOUT_SECONDS}s"
        )

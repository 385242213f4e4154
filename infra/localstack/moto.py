"""A moto S3/KMS server as a child process, for integration tests and the dev stack.

moto keeps everything in memory: ``stop``/``kill`` followed by ``start`` or
``restart`` comes back on the same port with no buckets, keys or objects, so
callers re-run the bucket bootstrap after a restart. Any credentials are
accepted; clients pass dummy ones explicitly rather than reading ~/.aws.
"""

from __future__ import annotations

import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from infra.localstack.process import ChildServer

STARTUP_TIMEOUT_SECONDS = 30.0


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


class MotoServerProcess(ChildServer):
    """``moto_server -H 127.0.0.1 -p PORT`` under our control (in-memory state)."""

    workdir_prefix = "moto-"

    @property
    def endpoint_url(self) -> str:
        """The HTTP endpoint S3 and KMS clients should use."""
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """moto's server on loopback."""
        return [moto_server_executable(), "-H", "127.0.0.1", "-p", str(self.port)]

    def _before_start(self) -> None:
        # Another server already listening would answer our readiness probe
        # while moto fails to bind, so refuse up front.
        if not _port_is_free(self.port):
            raise RuntimeError(f"port {self.port} is already in use")

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

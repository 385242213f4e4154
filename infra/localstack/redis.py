"""A throwaway redis-server as a child process, for fault tests and the dev stack.

Persistence is off (``--save '' --appendonly no``): a restart comes back on
the same port with an empty dataset, which is what the fault tests want.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from typing import Self

from infra.localstack.ports import find_free_port

STARTUP_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 10.0
_PING = b"*1\r\n$4\r\nPING\r\n"
_INFO_SERVER = b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"


def redis_server_executable() -> str:
    """Return the path of the redis-server binary on PATH."""
    found = shutil.which("redis-server")
    if found is None:
        raise FileNotFoundError("redis-server not found; install the Debian redis-server package")
    return found


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_SECONDS)


class RedisProcess:
    """``redis-server`` in the foreground under our control, bound to 127.0.0.1."""

    def __init__(self, port: int | None = None, workdir: str | Path | None = None) -> None:
        self.port = port if port is not None else find_free_port()
        self._own_workdir = workdir is None
        self.workdir = (
            Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="redis-"))
        )
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None

    @property
    def url(self) -> str:
        """The redis URL for database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def is_running(self) -> bool:
        """True if our child process is alive and answers PING."""
        return self._process is not None and self._process.poll() is None and self._pings()

    def start(self) -> Self:
        """Start redis-server (no-op if running) and wait for PONG."""
        if self._process is not None and self._process.poll() is None:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [
            redis_server_executable(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--daemonize", "no",
            "--logfile", str(self.workdir / "redis.log"),
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command,
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
        """Shut redis down gracefully (SIGTERM, then SIGKILL)."""
        process, self._process = self._process, None
        if self._finalizer is not None:
            self._finalizer.detach()
        if process is not None:
            _terminate(process)

    def kill(self) -> None:
        """Kill redis abruptly (SIGKILL), as a crash would."""
        process, self._process = self._process, None
        if self._finalizer is not None:
            self._finalizer.detach()
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_SECONDS)

    def restart(self) -> Self:
        """Stop and start again on the same port, with an empty dataset."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop redis and remove a workdir this object created."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _pings(self) -> bool:
        # A raw RESP PING keeps this module free of the redis client library.
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                sock.sendall(_PING)
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _serving_pid(self) -> int | None:
        # Readiness means *our* child answers: another redis already holding
        # the port would also say PONG while ours fails to bind and exits.
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                sock.sendall(_INFO_SERVER)
                reply = b""
                while b"process_id:" not in reply or not reply.split(b"process_id:", 1)[1].count(
                    b"\r\n"
                ):
                    data = sock.recv(4096)
                    if not data:
                        return None
                    reply += data
        except OSError:
            return None
        value = reply.split(b"process_id:", 1)[1].split(b"\r\n", 1)[0]
        return int(value) if value.strip().isdigit() else None

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            assert self._process is not None
            code = self._process.poll()
            if code is not None:
                self._process = None
                raise RuntimeError(
                    f"redis-server exited with status {code}; see {self.workdir / 'redis.log'}"
                )
            if self._serving_pid() == self._process.pid:
                return
            time.sleep(0.05)
        self.kill()
        raise TimeoutError(
            f"redis-server did not answer PING on port {self.port} within {STARTUP_TIMEOUT_SECONDS}s"
        )

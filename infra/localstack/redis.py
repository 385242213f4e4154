"""A throwaway redis-server as a child process, for fault tests and the dev stack.

Persistence is off (``--save '' --appendonly no``): a restart comes back on
the same port with an empty dataset, which is what the fault tests want.
"""

from __future__ import annotations

import shutil
import socket
import time

from infra.localstack.process import ChildServer

STARTUP_TIMEOUT_SECONDS = 20.0
_PING = b"*1\r\n$4\r\nPING\r\n"
_INFO_SERVER = b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"


def redis_server_executable() -> str:
    """Return the path of the redis-server binary on PATH."""
    found = shutil.which("redis-server")
    if found is None:
        raise FileNotFoundError("redis-server not found; install the Debian redis-server package")
    return found


class RedisProcess(ChildServer):
    """``redis-server`` in the foreground under our control, bound to 127.0.0.1."""

    workdir_prefix = "redis-"

    @property
    def url(self) -> str:
        """The redis URL for database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        """redis-server on loopback, nothing kept on disk."""
        return [
            redis_server_executable(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--daemonize", "no",
            "--logfile", str(self.workdir / "redis.log"),
        ]  # fmt: skip

    def _answers(self) -> bool:
        return self._pings()

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

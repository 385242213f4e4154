"""A throwaway clamd on 127.0.0.1 for the dev stack and the test suite."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from infra.localstack.ports import find_free_port

CLAMAV_DIR = Path(__file__).resolve().parent.parent / "clamav"
TEMPLATE = CLAMAV_DIR / "clamd.conf.in"
# Our own signatures always load; official ones are added when the host has
# them, so a machine running freshclam keeps full coverage.
OWN_DATABASE_GLOBS = ("*.ndb", "*.hdb")
OFFICIAL_DATABASE_DIR = Path("/var/lib/clamav")
OFFICIAL_DATABASE_GLOBS = ("*.cvd", "*.cld")

_PLACEHOLDER = re.compile(r"@[A-Z_]+@")


class ClamdStartError(RuntimeError):
    """clamd did not come up (or is not installed); the message has its log tail."""


def render_config(template: str, values: Mapping[str, str],
                  overrides: Mapping[str, str | None] | None = None) -> str:
    """Fill @NAME@ placeholders and replace or drop (value None) directives."""
    text = template
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    # Only directive lines count; the template's header documents @NAME@.
    directives = "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")
    )
    leftover = sorted(set(_PLACEHOLDER.findall(directives)))
    if leftover:
        raise ValueError(f"unfilled placeholders in clamd template: {leftover}")
    for directive, value in (overrides or {}).items():
        # Drop the template's line so the rendered file states one value only.
        pattern = re.compile(rf"^\s*{re.escape(directive)}(\s.*)?$\n?", re.MULTILINE)
        text = pattern.sub("", text)
        if value is not None:
            text = text.rstrip("\n") + f"\n{directive} {value}\n"
    return text


class ClamdProcess:
    """One clamd child process configured from infra/clamav/clamd.conf.in."""

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        port: int | None = None,
        *,
        overrides: Mapping[str, str | None] | None = None,
        official_database_dir: str | os.PathLike[str] | None = OFFICIAL_DATABASE_DIR,
        clamd_binary: str = "clamd",
        startup_timeout: float = 120.0,
    ) -> None:
        """Prepare (but do not start) a clamd rooted in workdir; port None picks a free one."""
        self.workdir = Path(workdir)
        self.port = port if port is not None else find_free_port()
        self.overrides = dict(overrides or {})
        self.official_database_dir = (
            Path(official_database_dir) if official_database_dir is not None else None
        )
        self.clamd_binary = clamd_binary
        # Official main.cvd takes tens of seconds to load; ours alone about one.
        self.startup_timeout = startup_timeout
        self.database_dir = self.workdir / "db"
        self.temp_dir = self.workdir / "tmp"
        self.conf_path = self.workdir / "clamd.conf"
        self.log_path = self.workdir / "clamd.log"
        self.pid_path = self.workdir / "clamd.pid"
        self.output_path = self.workdir / "clamd.out"
        self._process: subprocess.Popen[bytes] | None = None
        self._prepared = False

    @property
    def address(self) -> str:
        """The "127.0.0.1:PORT" address clients connect to."""
        return f"127.0.0.1:{self.port}"

    def is_running(self) -> bool:
        """True while the clamd child process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The child's pid, or None when never started."""
        return self._process.pid if self._process is not None else None

    def prepare(self) -> None:
        """Render clamd.conf and copy signature databases into the work dir."""
        binary = shutil.which(self.clamd_binary)
        if binary is None:
            raise ClamdStartError(
                f"{self.clamd_binary!r} not found on PATH; install Debian's clamav-daemon"
            )
        self.clamd_binary = binary
        for directory in (self.workdir, self.database_dir, self.temp_dir):
            directory.mkdir(parents=True, exist_ok=True)
        copied = self._copy_databases()
        if not copied:
            raise ClamdStartError(f"no signature databases found in {CLAMAV_DIR}")
        values = {
            "DATABASE_DIR": str(self.database_dir),
            "TCP_PORT": str(self.port),
            "PID_FILE": str(self.pid_path),
            "LOG_FILE": str(self.log_path),
            "TEMP_DIR": str(self.temp_dir),
        }
        text = render_config(TEMPLATE.read_text(), values, self.overrides)
        self.conf_path.write_text(text)
        self._prepared = True

    def _copy_databases(self) -> list[Path]:
        sources: list[Path] = []
        for pattern in OWN_DATABASE_GLOBS:
            sources.extend(sorted(CLAMAV_DIR.glob(pattern)))
        if self.official_database_dir is not None and self.official_database_dir.is_dir():
            for pattern in OFFICIAL_DATABASE_GLOBS:
                sources.extend(sorted(self.official_database_dir.glob(pattern)))
        copied = []
        for source in sources:
            target = self.database_dir / source.name
            shutil.copyfile(source, target)
            copied.append(target)
        return copied

    def start(self) -> None:
        """Start clamd and block until it answers PING, or raise ClamdStartError."""
        if self.is_running():
            return
        if not self._prepared:
            self.prepare()
        # A pid file left by a SIGKILLed run is harmless, but a fresh one
        # makes "is this the new process" obvious when reading the work dir.
        self.pid_path.unlink(missing_ok=True)
        with open(self.output_path, "ab") as output:
            # clamd's own stdout/stderr go to a file: a pipe nobody reads
            # would eventually block it.
            self._process = subprocess.Popen(
                [self.clamd_binary, "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if not self.is_running():
                code = self._process.returncode if self._process else None
                raise ClamdStartError(
                    f"clamd exited with code {code} during startup\n{self.log_tail()}"
                )
            if self.ping(timeout=1.0):
                return
            time.sleep(0.1)
        self.kill()
        raise ClamdStartError(
            f"clamd did not answer PING on {self.address} within "
            f"{self.startup_timeout:.0f}s\n{self.log_tail()}"
        )

    def ping(self, timeout: float = 1.0) -> bool:
        """True if clamd answers PING with PONG right now."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
                sock.sendall(b"zPING\0")
                reply = b""
                while not reply.endswith(b"\0"):
                    data = sock.recv(64)
                    if not data:
                        break
                    reply += data
        except OSError:
            return False
        return reply.rstrip(b"\0") == b"PONG"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM clamd, SIGKILL it if it lingers, and reap it."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def kill(self) -> None:
        """SIGKILL clamd at once (fault tests) and reap it."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._process = None

    def restart(self) -> None:
        """Stop (if running) and start again on the same port."""
        self.stop()
        self.start()

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of clamd's log and console output, for error messages."""
        parts = []
        for path in (self.log_path, self.output_path):
            try:
                text = path.read_text(errors="replace")
            except FileNotFoundError:
                continue
            tail = text.splitlines()[-lines:]
            parts.append(f"--- {path.name} (last {len(tail)} lines) ---\n" + "\n".join(tail))
        return "\n".join(parts) or "(clamd wrote no log)"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<ClamdProcess {self.address} {state} in {self.workdir}>"

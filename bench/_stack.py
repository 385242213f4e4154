"""A throwaway local stack for benchmarks: clamd, moto S3/KMS, Redis, SQLite (or a given database) and
gunicorn-served gateways.

    with BenchStack() as stack:
        gateway = stack.start_gateway()   # a fresh one-worker gunicorn; stopped with the stack
        ...

Everything listens on 127.0.0.1 and lives in one temporary directory that is
removed at the end; the machine's Redis on 127.0.0.1:6379 is used (database
15) when it answers, so a benchmark leaves the developer's database 0 alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

from gateway import migrate
from gateway.db import Database
from gateway.settings import Settings
from infra.aws.bootstrap import aws_clients, bootstrap_documents_bucket
from infra.localstack.clamd import ClamdProcess
from infra.localstack.mail import MailCatcher
from infra.localstack.moto import MotoServerProcess
from infra.localstack.ports import find_free_port
from infra.localstack.redis import RedisProcess
from tests.factories import make_tenant
from tests.fixtures.live import LiveGateway

REGION = "eu-central-1"
BUCKET = "bench-documents"
KMS_ALIAS = "alias/bench-documents"
ACCESS_KEY = SECRET_KEY = "testing"  # moto accepts anything; never the developer's own AWS keys
LOCAL_REDIS = ("127.0.0.1", 6379)
# clamd remembers the hash of every clean stream and answers a repeat from that
# cache without scanning. Real uploads are all different, while a benchmark
# sends the same bytes several times (gateway, raw leg, rounds): with the cache
# on, whichever leg came second would skip the scan and look several times faster.
CLAMD_OVERRIDES = {"DisableCache": "yes"}


def _local_redis_answers() -> bool:
    """True if a Redis on 127.0.0.1:6379 answers PING right now."""
    try:
        with socket.create_connection(LOCAL_REDIS, timeout=1.0) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class MailSink(MailCatcher):
    """The local SMTP server, counting what it accepts (in `counter`) instead of keeping and parsing it."""

    def __init__(self, maildir: Path, *, counter: Path, **options):
        super().__init__(maildir, **options)
        self.counter, self.count = counter, 0

    def keep(self, envelope) -> None:
        self.count += 1
        self.counter.write_text(str(self.count))


def _answers(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


class MailSinkProcess:
    """The SMTP sink in a process of its own: in the bench's process it would wait for the GIL behind the
    client threads, and every e-mail a worker sends would wait for it."""

    def __init__(self, workdir: Path):
        self.workdir, self.host, self.port = workdir, "127.0.0.1", find_free_port()
        self.counter = workdir / "accepted"
        self._process: subprocess.Popen | None = None

    def start(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        code = ("import signal, sys; from pathlib import Path; from bench._stack import MailSink; "
                "MailSink(Path(sys.argv[1]), counter=Path(sys.argv[2]), port=int(sys.argv[3])).start(); "
                "signal.pause()")
        self._process = subprocess.Popen([sys.executable, "-c", code, str(self.workdir / "maildir"),
                                          str(self.counter), str(self.port)], cwd=Path(__file__).parent.parent)
        deadline = time.monotonic() + 15
        while not _answers(self.host, self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the bench's SMTP sink did not start")
            time.sleep(0.05)
        return self

    @property
    def accepted(self) -> int:
        try:
            return int(self.counter.read_text() or 0)
        except (OSError, ValueError):
            return 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=5)
            if self._process.poll() is None:
                self._process.kill()


class BenchStack:
    """The services one benchmark run needs, started in order and stopped in reverse."""

    def __init__(self, *, clamd_overrides: dict[str, str | None] | None = None, database_url: str | None = None,
                 **setting_overrides) -> None:
        """setting_overrides change the gateway Settings; clamd_overrides its clamd.conf (default: no cache);
        database_url an empty database to migrate and use (default: SQLite in the work dir)."""
        self._database_url = database_url
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-stack-"))
        self._setting_overrides = setting_overrides
        self._clamd_overrides = CLAMD_OVERRIDES if clamd_overrides is None else clamd_overrides
        self._stops: list = []  # callables, run in reverse at close()
        self.clamd: ClamdProcess | None = None
        self.moto: MotoServerProcess | None = None
        self.settings: Settings | None = None
        self.db: Database | None = None
        self.s3 = self.kms = None
        self.api_key: str | None = None
        self.mail: MailSinkProcess | None = None

    def start(self) -> Self:
        """Start clamd, moto (bucket bootstrapped), Redis and a migrated SQLite database; make a tenant."""
        try:
            self.clamd = ClamdProcess(self.workdir / "clamd", overrides=self._clamd_overrides)
            self.clamd.start()
            self._stops.append(self.clamd.stop)
            self.moto = MotoServerProcess(workdir=self.workdir / "moto").start()
            self._stops.append(self.moto.stop)
            self.s3, self.kms = aws_clients(self.moto.endpoint_url, REGION, ACCESS_KEY, SECRET_KEY)
            # moto would apply the bucket policy's tag-conditional Deny unconditionally.
            bootstrap_documents_bucket(self.s3, self.kms, BUCKET, KMS_ALIAS, REGION, apply_bucket_policy=False)
            redis_url = self._redis_url()
            # Notification e-mail goes to a real SMTP server, as under `make run`: without one every e-mail
            # would fail, be retried, and cost the worker what a working server never would.
            self.mail = MailSinkProcess(self.workdir / "mail").start()
            self._stops.append(self.mail.stop)
            database_url = self._database_url or f"sqlite:///{self.workdir / 'gateway.db'}"
            migrate.upgrade(database_url)
            self.settings = Settings.from_env(
                {}, env="test", data_dir=self.workdir / "data", database_url=database_url, redis_url=redis_url,
                clamd_addresses=(self.clamd.address,), s3_endpoint_url=self.moto.endpoint_url, s3_region=REGION,
                s3_bucket=BUCKET, kms_key_id=KMS_ALIAS, aws_access_key_id=ACCESS_KEY,
                aws_secret_access_key=SECRET_KEY, api_rate_limit="1000000 per minute", log_level="WARNING",
                smtp_host=self.mail.host, smtp_port=self.mail.port,
                # The benches' authorizations are one-word sample PDFs, not forms: read, each would wait for an
                # OCR job (no worker reads here).  bench.reading measures reading; a bench may turn it on.
                **{"reading_enabled": False, **self._setting_overrides})
            self.db = Database(database_url)
            self._stops.append(self.db.dispose)
            self.api_key = make_tenant(self.db).api_key
        except BaseException:
            self.close()
            raise
        return self

    def _redis_url(self) -> str:
        if _local_redis_answers():
            return f"redis://{LOCAL_REDIS[0]}:{LOCAL_REDIS[1]}/15"
        server = RedisProcess(workdir=self.workdir / "redis").start()
        self._stops.append(server.stop)
        return server.url

    def start_gateway(self, **setting_overrides) -> LiveGateway:
        """A new one-worker gunicorn serving the app on these services; stopped at close() at the latest."""
        assert self.settings is not None, "start() the stack first"
        settings = dataclasses.replace(self.settings, **setting_overrides)
        gateway = LiveGateway(settings, self.workdir)
        self._stops.append(gateway.stop)
        return gateway

    def empty_bucket(self) -> None:
        """Delete every object version and unfinished multipart upload (moto holds them all in memory)."""
        versions = self.s3.get_paginator("list_object_versions")
        for page in versions.paginate(Bucket=BUCKET):
            doomed = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                      for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            if doomed:
                self.s3.delete_objects(Bucket=BUCKET, Delete={"Objects": doomed, "Quiet": True})
        for upload in self.s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []):
            self.s3.abort_multipart_upload(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])

    def close(self) -> None:
        """Stop everything that was started (a gateway stopped twice is harmless) and remove the work dir."""
        while self._stops:
            stop = self._stops.pop()
            with contextlib.suppress(Exception):
                stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class PrivateRedisStack(BenchStack):
    """The bench stack with a redis-server of its own: the shared local Redis (database 15) may carry other
    benchmarks' jobs at the same time, and their clean-ups would delete this run's."""

    def _redis_url(self) -> str:
        server = RedisProcess(workdir=self.workdir / "redis").start()
        self._stops.append(server.stop)
        return server.url

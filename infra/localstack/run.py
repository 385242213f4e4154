"""`make run`: the whole gateway stack on loopback, in the foreground, until Ctrl-C.

Starts what is not already there -- Redis (unless one answers at the configured
URL), clamd with the project's config and signatures, moto's S3 server with the
documents and audit-checkpoint buckets bootstrapped by infra/aws/bootstrap.py, a
local SMTP catcher that keeps the gateway's e-mail in a Maildir (unless the
settings name a real mail server) -- then migrates the database, seeds demo
credentials, and runs gunicorn, an RQ worker and the outbox relay.  Ctrl-C stops
exactly what it started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from gateway.settings import Settings
from infra import GUNICORN_CONFIG
from infra.aws.bootstrap import aws_clients, bootstrap_checkpoint_bucket, bootstrap_documents_bucket
from infra.localstack.clamd import ClamdProcess
from infra.localstack.mail import MailCatcher
from infra.localstack.moto import MotoServerProcess
from infra.localstack.redis import RedisProcess

BIN = Path(sys.executable).parent
API = "127.0.0.1:8080"


def say(message: str) -> None:
    print(f"[make run] {message}", flush=True)


def redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except Exception:
        return False


def wait_ready(url: str, timeout: float) -> dict:
    deadline, last = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            last = json.load(error)
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the gateway did not become ready within {timeout:.0f}s: {last}")


class Stack:
    """What this run started, stopped in reverse order."""

    def __init__(self):
        self.services: list = []
        self.children: list[tuple[str, subprocess.Popen]] = []

    def spawn(self, name: str, argv: list[str], env: dict) -> None:
        say(f"starting {name}")
        # Same process group: Ctrl-C reaches every child at once and none can outlive the stack.
        self.children.append((name, subprocess.Popen(argv, env=env)))

    def stop(self) -> None:
        for name, child in reversed(self.children):
            if child.poll() is None:
                say(f"stopping {name}")
                child.terminate()
        for _, child in self.children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        for service in reversed(self.services):
            say(f"stopping {type(service).__name__}")
            service.stop()


def main() -> int:
    settings = Settings.from_env()
    run_dir = Path(settings.data_dir) / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(run_dir / "metrics")}
    Path(env["PROMETHEUS_MULTIPROC_DIR"]).mkdir(exist_ok=True)
    for stale in Path(env["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
        stale.unlink()
    try:
        if redis_answers(settings.redis_url):
            say(f"using the Redis already answering at {settings.redis_url}")
        else:
            port = urlparse(settings.redis_url).port or 6379
            stack.services.append(RedisProcess(port=port, workdir=run_dir / "redis").start())
            say(f"Redis on 127.0.0.1:{port}")

        clamd_port = int(settings.clamd_addresses[0].rpartition(":")[2])
        clamd = ClamdProcess(run_dir / "clamd", port=clamd_port)
        clamd.start()
        stack.services.append(clamd)
        say(f"clamd on {clamd.address} with infra/clamav signatures")

        s3_port = urlparse(settings.s3_endpoint_url or "").port or 5005
        stack.services.append(MotoServerProcess(port=s3_port, workdir=run_dir / "moto").start())
        s3, kms = aws_clients(settings.s3_endpoint_url, settings.s3_region, "testing", "testing")
        # moto treats the tag-gated Deny as unconditional, so the emulator's bucket gets no policy.
        result = bootstrap_documents_bucket(s3, kms, settings.s3_bucket, settings.kms_key_id,
                                            settings.s3_region, apply_bucket_policy=False)
        say(f"S3 endpoint {settings.s3_endpoint_url}, bucket {result.bucket} (SSE-KMS {result.kms_key_alias})")
        audit = bootstrap_checkpoint_bucket(s3, settings.audit_checkpoint_bucket, settings.s3_region,
                                            settings.audit_checkpoint_retention_days, apply_bucket_policy=False)
        say(f"audit checkpoints in bucket {audit.bucket} (Object Lock, COMPLIANCE, {audit.retention_days} days)")

        start_mail_catcher(settings, run_dir, stack)

        gateway = [str(BIN / "gateway")]
        subprocess.run([*gateway, "db", "upgrade"], check=True, env=env)
        seed = json.loads(subprocess.run([*gateway, "demo", "seed", "--json"], check=True, env=env,
                                         capture_output=True, text=True).stdout)

        stack.spawn("gunicorn", [str(BIN / "gunicorn"), "--config", str(GUNICORN_CONFIG), "--bind", API,
                                 "gateway.wsgi:app"], env)
        stack.spawn("RQ worker", [*gateway, "worker"], env)
        stack.spawn("outbox relay", [*gateway, "outbox", "relay"], env)

        started = time.monotonic()
        ready = wait_ready(f"http://{API}/readyz", timeout=180)
        clamd_check = ready["checks"]["clamd"]
        say(f"ready in {time.monotonic() - started:.1f}s: http://{API}  (portal at http://localhost:{API.split(':')[1]}"
            f"/portal/; docs at http://{API}/docs; {clamd_check.get('engine')})")
        print_credentials(seed)
        say("Ctrl-C stops everything started here.")
        while all(child.poll() is None for _, child in stack.children):
            time.sleep(1)
        dead = [name for name, child in stack.children if child.poll() is not None]
        say(f"{', '.join(dead)} exited; stopping the stack")
        return 1
    except KeyboardInterrupt:
        say("stopping")
        return 0
    finally:
        stack.stop()


def port_answers(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def start_mail_catcher(settings: Settings, run_dir: Path, stack: Stack) -> None:
    """The gateway's e-mail goes to a local catcher writing a Maildir, unless a real server is configured."""
    from gateway.settings import is_loopback_host

    where = f"{settings.smtp_host}:{settings.smtp_port}"
    if not is_loopback_host(settings.smtp_host):
        say(f"e-mail goes to the SMTP server at {where} (GATEWAY_SMTP_*)")
        return
    if port_answers(settings.smtp_host, settings.smtp_port):
        say(f"e-mail goes to the SMTP server already answering at {where}")
        return
    maildir = run_dir / "mail"

    def announce(caught, path) -> None:
        say(f"mail to {', '.join(caught.rcpt_tos)}: {caught.message['Subject']}  ({path})")

    catcher = MailCatcher(maildir, host=settings.smtp_host, port=settings.smtp_port, on_message=announce).start()
    stack.services.append(catcher)
    say(f"mail catcher on {where}: every e-mail is kept in the Maildir {maildir} (one file per message in "
        f"{maildir / 'new'}; read them with `cat`, or `mutt -f {maildir}`)")


def print_credentials(seed: dict) -> None:
    print("\nDemo credentials (fresh on every `make run`):")
    for user in seed["users"]:
        print(f"  {user['label']:<36} {user['email']:<44} {user['password']}")
    print(f"  {'insurer API key (Demo Insurance Co)':<36} {seed['api_key']}")
    print(f"\n  curl -H 'Authorization: Bearer {seed['api_key']}' http://{API}/v1/me\n", flush=True)


if __name__ == "__main__":
    sys.exit(main())

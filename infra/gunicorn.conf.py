"""gunicorn settings for the gateway: `gunicorn -c infra/gunicorn.conf.py gateway.wsgi:app`.

Used by `make run` (infra/localstack/run.py), the tests' live gateway
(tests/fixtures/live.py) and the container image.  Command-line flags
(--bind, --workers) override what is set here.

Why this worker model (gunicorn's "Design" page, "Choosing a Worker Type"):
- `sync` handles one request per process and assumes a buffering proxy (nginx)
  in front: exposed directly, a client trickling its head or body holds a whole
  worker for as long as it likes, and a handful of them (slowloris) hold all.
- `gevent` would make waiting cheap, but every blocking call must then be
  green: psycopg (libpq), SQLite, Argon2 and the PDF checks run in C or on the
  CPU and would stall every connection of the worker, and monkey-patching
  after boto3, redis and SQLAlchemy are imported is fragile.  It would also be
  a new dependency.
- `gthread` keeps the plain blocking code the application is written for
  (thread-safe clients built once per process, one DB session per request),
  serves keep-alive connections from a selector without a thread, and is the
  base of gateway.serving.GatewayThreadWorker, which also reads request heads
  and small bodies in that selector and puts timeouts and a minimum pace on
  everything a thread reads or writes: slow clients cost a socket, not a thread.
A buffering proxy in front is still welcome in production; nothing here needs one.
"""

import os
import shutil
import tempfile
from pathlib import Path


def available_cores(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup v2 quota (a container's CPU limit)."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))  # a 1.5-CPU limit is 2 processes
    except (OSError, ValueError):
        pass
    return max(1, cores)


# The worker class above; its timeouts (head 10 s, one socket operation 30 s, bodies at least
# 4 KiB/s after 20 s) are constants in gateway/serving.py, next to the code that applies them.
worker_class = "gateway.serving.GatewayThreadWorker"
# Processes: one per core (threads do the waiting; a process per core keeps the GIL from capping the
# CPU work), at least two so one worker restarting (max_requests) never leaves the port unserved.
# WEB_CONCURRENCY (gunicorn's own variable) or --workers overrides.
workers = int(os.environ.get("WEB_CONCURRENCY", "0")) or max(2, available_cores())
# Requests in progress per process.  Below the database pool (5 + 10 overflow per process, see
# gateway/db.py) so a thread never waits for a connection; slow clients do not occupy threads.
threads = 8
# Open connections per process, most of them idle or still sending their head (no thread each).
worker_connections = 1000
# Kept-alive idle connections wait in the selector this long for their next request.
keepalive = 5
# With gthread this is the main loop's heartbeat, not a request deadline: a long upload in a
# thread does not trip it, a wedged process does.
timeout = 30
# SIGTERM is a warm shutdown, as for the RQ workers (`gateway worker`: the job in hand finishes, no new
# one starts): the listener closes and requests in progress get this long to finish; SIGINT/SIGQUIT
# (and a second SIGTERM from an orchestrator's kill) stop at once, like RQ's cold shutdown.  Deployments
# give the container more than this before SIGKILL (terminationGracePeriodSeconds 45, stop_grace_period).
graceful_timeout = 30
# Recycle a process after this many requests, each at its own point (jitter), so a slow leak in a
# library never grows without bound and the processes never restart together.
max_requests = 5000
max_requests_jitter = 500
# The heartbeat files live in memory, not on the (read-only in containers) root file system.
_SHM = "/dev/shm"  # noqa: S108  (gunicorn's own advice for the heartbeat files; not a shared temp name)
worker_tmp_dir = _SHM if os.path.isdir(_SHM) and os.access(_SHM, os.W_OK) else None
# gunicorn's defaults, stated: a request line of 4 KiB, 100 header fields of 8 KiB each (the
# worker refuses any head over 64 KiB before these apply).
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
# Logs go to stdout/stderr (the container runtime collects them); the app's own access log is JSON.
accesslog = None
errorlog = "-"

# Prometheus multiprocess mode (gateway/metrics.py): every worker writes its values into one folder and
# /metrics sums them.  The variable must be set before any worker imports prometheus_client, so here, in
# the arbiter; without one in the environment a private folder is made for this arbiter and removed at exit.
_PRIVATE_METRICS_DIR = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _PRIVATE_METRICS_DIR = tempfile.mkdtemp(prefix="gateway-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _PRIVATE_METRICS_DIR


def on_starting(server):
    """The folder must exist; files already in it (a restarted container, `make run`'s shared folder with
    its RQ worker and relay) are kept: they hold counters, which stay correct when summed."""
    Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)


# Accepted work drains before new work is admitted: where the web tier shares cores with the relay and
# the RQ workers (`make run`, one host, the benchmarks), its processes run this much nicer, so a saturated
# intake slows itself rather than the hand-overs behind it.  On a 2-core machine under bench/load.py's
# closed-loop load on PostgreSQL (interleaved runs, 0 against 5): submit → routed p50/p99 186-254/581-1,638 ms
# against 27-31/114-145, handed over p99 6.1-6.5 s against 0.45, and the e-mails of the run sent (16 and 308
# against 942 and 796); intake 23-24 against 17-20 a second, because the pipeline's work is then done
# during the load rather than left behind it.  Containers schedule by their own CPU weights (infra/k8s,
# docker-compose.yml), where this only ranks the web processes among themselves.  GATEWAY_WEB_NICE=0: off.
_WEB_NICE = int(os.environ.get("GATEWAY_WEB_NICE", "5"))


def post_fork(server, worker):
    """In each new web worker: take the web tier's lower CPU priority (a worker may only ever lower its own)."""
    if _WEB_NICE > 0:
        os.nice(_WEB_NICE)


def post_worker_init(worker):
    """The app is loaded: its start-up objects leave the garbage collector's full passes (gateway/startup_heap.py)."""
    from gateway.startup_heap import freeze_startup_heap

    freeze_startup_heap()


def child_exit(server, worker):
    """A worker is gone (recycled, killed): its live gauges stop counting; its counters stay summed."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the private metrics folder (a folder named by the environment is its owner's)."""
    if _PRIVATE_METRICS_DIR:
        shutil.rmtree(_PRIVATE_METRICS_DIR, ignore_errors=True)

"""Prometheus metrics: HTTP traffic, the work behind it, and backlogs read at scrape time.

Three kinds:
- per application (`Metrics`): HTTP requests and their latency, in the app's own registry
  (so tests building several apps don't collide);
- domain histograms (module level, below): hand-over latency, upload and scan durations,
  observed by the code doing the work in whichever process it runs (gunicorn worker, RQ worker);
- backlogs (`BacklogCollector`): RQ queue depth and oldest job age, the outbox's unrelayed rows,
  read from Redis and the database when /metrics is scraped, so they are exact and cost nothing
  between scrapes.

Under gunicorn every worker process keeps its own counters; with PROMETHEUS_MULTIPROC_DIR set
(infra/gunicorn.conf.py sets it, and `--metrics-port` of `gateway worker` and `gateway outbox relay`) each process
writes its values to files in that folder and a scrape sums them (prometheus_client's multiprocess
mode).  The variable must be in the environment before prometheus_client is imported.

Labels carry route templates, queue names (facility codes) and outcomes only: never a path, a
reference, a file name or anything a requester typed.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
log = logging.getLogger("gateway.metrics")

# Seconds from submission to the hand-over (a facility sink or a review queue): the relay and a
# worker add up to well under a second when healthy; the top buckets show a backlog building.
HANDOVER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)
# Uploads run from a few KiB (seconds at most) to 500 MiB (a minute or more on a slow link).
UPLOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
SCAN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# Oldest-job age looks at this many jobs from the head of a queue: jobs pushed to the front
# (urgent ones) are newer than the ones behind them, so the head alone would understate it.
OLDEST_JOB_WINDOW = 20
# The gauges BacklogCollector computes at scrape time (names fixed here for dashboards and their test).
QUEUE_DEPTH = "gateway_queue_depth"
QUEUE_OLDEST_AGE = "gateway_queue_oldest_job_age_seconds"
OUTBOX_BACKLOG = "gateway_outbox_backlog"
OUTBOX_OLDEST_AGE = "gateway_outbox_oldest_age_seconds"
SOURCE_UP = "gateway_metrics_source_up"
SCRAPED_GAUGES = (QUEUE_DEPTH, QUEUE_OLDEST_AGE, OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE, SOURCE_UP)

DOMAIN = CollectorRegistry(auto_describe=True)
HANDOVER_SECONDS = Histogram(
    "gateway_handover_seconds", "Time from a request's submission to its hand-over, by queue handed over on",
    ["queue"], buckets=HANDOVER_BUCKETS, registry=DOMAIN)
UPLOAD_SECONDS = Histogram(
    "gateway_upload_seconds", "Time to receive, scan, hash and stage one uploaded file",
    buckets=UPLOAD_BUCKETS, registry=DOMAIN)
UPLOAD_BYTES = Counter("gateway_upload_bytes", "Bytes of uploaded files received", registry=DOMAIN)
SCAN_SECONDS = Histogram(
    "gateway_scan_seconds", "Time from opening a clamd stream to its verdict, by verdict",
    ["outcome"], buckets=SCAN_BUCKETS, registry=DOMAIN)
# Counted by the relay (`gateway outbox relay --metrics-port`): any increase means Redis lost queued work
# (restarted without persistence, evicted, or a worker killed between taking a job and starting it).
ROUTES_REPUBLISHED = Counter(
    "gateway_route_jobs_republished", "Route jobs the queue broker lost, published again by the relay",
    registry=DOMAIN)


def multiprocess_dir() -> str | None:
    """The folder processes share their values through, when multiprocess mode is on."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def observe_handover(queue: str, submitted_at: datetime | None, now: datetime) -> None:
    """One request handed over on `queue` (a queue name: ids and codes only)."""
    if submitted_at is not None:
        HANDOVER_SECONDS.labels(queue).observe(max(0.0, (now - submitted_at).total_seconds()))


def _age(now: datetime, then: datetime | None) -> float:
    return max(0.0, (now - then).total_seconds()) if then is not None else 0.0


class BacklogCollector:
    """Gauges computed when scraped: RQ queues (Redis) and the outbox (database).

    A source that does not answer is reported as `gateway_metrics_source_up{source} 0` and its
    gauges are left out: /metrics itself never fails because Redis or the database is down
    (/readyz is the place that says so).
    """

    def __init__(self, *, redis, db, clock):
        self.redis, self.db, self.clock = redis, db, clock

    def describe(self):
        return []  # computed at scrape time; nothing to check at registration

    def collect(self):
        now = self.clock.now().astimezone(UTC)
        up = GaugeMetricFamily(SOURCE_UP, "Whether a backlog source answered this scrape",
                               labels=["source"])
        for source, read in (("redis", self._queues), ("database", self._outbox)):
            try:
                families = read(now)
            except Exception as error:  # any failure: this source's gauges are absent, the scrape goes on
                log.warning("metrics source unavailable", extra={"source": source, "error": type(error).__name__})
                up.add_metric([source], 0)
                continue
            up.add_metric([source], 1)
            yield from families
        yield up

    def _queues(self, now: datetime) -> list:
        from rq import Queue
        from rq.utils import utcparse

        depth = GaugeMetricFamily(QUEUE_DEPTH, "Jobs waiting on an RQ queue", labels=["queue"])
        oldest = GaugeMetricFamily(QUEUE_OLDEST_AGE,
                                   "Age of the oldest waiting job on an RQ queue (0 when empty)", labels=["queue"])
        for queue in sorted(Queue.all(connection=self.redis), key=lambda q: q.name):
            ids = self.redis.lrange(queue.key, 0, OLDEST_JOB_WINDOW - 1)
            pipe = self.redis.pipeline(transaction=False)
            for job_id in ids:
                pipe.hget(Queue.job_class.key_for(job_id.decode()), "enqueued_at")
            stamps = [utcparse(s.decode()).replace(tzinfo=UTC) for s in pipe.execute() if s]
            depth.add_metric([queue.name], queue.count)
            oldest.add_metric([queue.name], _age(now, min(stamps)) if stamps else 0.0)
        return [depth, oldest]

    def _outbox(self, now: datetime) -> list:
        from sqlalchemy import func, select

        from gateway.outbox import OutboxMessage

        backlog = GaugeMetricFamily(OUTBOX_BACKLOG, "Outbox rows not yet relayed, by kind",
                                    labels=["kind"])
        oldest = GaugeMetricFamily(OUTBOX_OLDEST_AGE,
                                   "Age of the oldest outbox row not yet relayed, by kind (0 when none)",
                                   labels=["kind"])
        with self.db.sessions() as session:
            rows = session.execute(
                select(OutboxMessage.kind, func.count(), func.min(OutboxMessage.created_at))
                .where(OutboxMessage.state.in_(("pending", "claimed")))  # ix_outbox_due; `sent` rows pile up
                .group_by(OutboxMessage.kind)).all()
        found = {kind: (count, first) for kind, count, first in rows}
        for kind in sorted({"route", "notify", *found}):
            count, first = found.get(kind, (0, None))
            if first is not None and first.tzinfo is None:
                first = first.replace(tzinfo=UTC)
            backlog.add_metric([kind], count)
            oldest.add_metric([kind], _age(now, first))
        return [backlog, oldest]


def _process_gone(path: Path) -> bool:
    pid = path.stem.rpartition("_")[2]
    if not pid.isdigit():
        return False  # an archive
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def compact_dead_processes(folder: str) -> int:
    """Fold the counters and histograms of processes that are gone into one archive file per type.

    Multiprocess mode writes one file per process id, and an RQ worker forks a work horse per job: without
    this, every hand-over would leave a file behind and each scrape would read them all.  Sums are kept
    exactly (an archive is just one more file the collector adds up).  Gauges are not ours to fold
    (`mark_process_dead` handles live ones).  Runs under a file lock: several processes may scrape at once.
    """
    import fcntl

    from prometheus_client.mmap_dict import MmapedDict

    root = Path(folder)
    folded = 0
    with (root / ".compact.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for kind in ("counter", "histogram"):
            gone = [p for p in sorted(root.glob(f"{kind}_*.db")) if _process_gone(p)]
            if not gone:
                continue
            archive = MmapedDict(str(root / f"{kind}_archive.db"))
            try:
                for path in gone:
                    for key, value, timestamp, _position in MmapedDict.read_all_values_from_file(str(path)):
                        current, stamp = archive.read_value(key)
                        archive.write_value(key, current + value, max(stamp, timestamp))
                    path.unlink()  # after its values are in the archive (a crash between would count it twice)
                    folded += 1
            finally:
                archive.close()
    return folded


class _CompactingCollector:
    """prometheus_client's MultiProcessCollector over a folder compacted first."""

    def __init__(self, folder: str):
        self.folder = folder
        self.inner = multiprocess.MultiProcessCollector(None, path=folder)

    def collect(self):
        compact_dead_processes(self.folder)
        return self.inner.collect()


class Metrics:
    """The HTTP metrics of one application instance, and what its /metrics shows."""

    def __init__(self, backlog: BacklogCollector | None = None):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("gateway_http_requests_total", "HTTP requests answered",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("gateway_http_request_seconds", "Time to answer HTTP requests",
                                 ["route"], registry=self.registry)
        self.backlog = backlog

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request; `route` is the URL rule, never the raw path."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> bytes:
        """The exposition text: summed over processes in multiprocess mode, plus the backlogs."""
        scraped = CollectorRegistry()
        if self.backlog is not None:
            scraped.register(self.backlog)
        if multiprocess_dir():
            scraped.register(_CompactingCollector(multiprocess_dir()))
            return generate_latest(scraped)
        return generate_latest(self.registry) + generate_latest(DOMAIN) + generate_latest(scraped)


def exporter_registry() -> CollectorRegistry:
    """What a worker's or the relay's own exporter serves (their `--metrics-port`)."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        registry.register(_CompactingCollector(multiprocess_dir()))
        return registry
    return DOMAIN


def exported_sample_names() -> set[str]:
    """Every sample name /metrics can show (histograms' _bucket/_count/_sum, counters' _total...)."""
    names = set(SCRAPED_GAUGES)
    for registry in (Metrics().registry, DOMAIN):
        for family in registry.collect():
            names.update(sample.name for sample in family.samples)
            if family.type == "gauge":
                names.add(family.name)
            elif family.type == "histogram":
                names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
            elif family.type == "counter":
                names.update(f"{family.name}{suffix}" for suffix in ("_total", "_created"))
    return names

"""/metrics after real work: uploads scanned by clamd, outbox rows relayed to RQ, hand-overs by a real worker,
and gunicorn's processes summed in multiprocess mode (gateway/metrics.py, infra/gunicorn.conf.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.adapters import build_redis
from gateway.routing import relay
from gateway.routing.dispatch import RqDispatcher
from infra.localstack.ports import find_free_port
from tests.factories import make_tenant
from tests.fixtures.live import settings_environment
from tests.fixtures.logs import new_log_path
from tests.routing.helpers import submitted

pytestmark = pytest.mark.one_database  # what is counted does not depend on the database engine

FACILITY = "tufts-mc"
QUEUE = f"facility.{FACILITY}"


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of an exposition text, by (name, sorted labels); a series shown twice is a failure."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in found, f"{key} exported twice"
            found[key] = sample.value
    return found


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200
    return samples(response.get_data(as_text=True))


@pytest.fixture
def clean_queues(settings):
    build_redis(settings).flushdb()


def test_uploads_scans_outbox_and_queues_move(client, db, settings, clean_queues):
    before = scrape(client)
    tenant = make_tenant(db)
    submitted(client, tenant, FACILITY)  # create, upload the authorization (clamd scans it), submit
    after_submit = scrape(client)

    assert value(after_submit, "gateway_upload_seconds_count") == value(before, "gateway_upload_seconds_count") + 1
    assert value(after_submit, "gateway_upload_bytes_total") > value(before, "gateway_upload_bytes_total")
    assert (value(after_submit, "gateway_scan_seconds_count", outcome="clean")
            == value(before, "gateway_scan_seconds_count", outcome="clean") + 1)
    # The submission's route row waits in the outbox (no relay runs here) and its age is measured.
    assert value(after_submit, "gateway_outbox_backlog", kind="route") >= 1
    assert value(after_submit, "gateway_outbox_oldest_age_seconds", kind="route") >= 0
    assert value(after_submit, "gateway_metrics_source_up", source="database") == 1
    assert value(after_submit, "gateway_metrics_source_up", source="redis") == 1

    relay.publish_due(db, RqDispatcher(build_redis(settings)), batch=1000)
    relayed = scrape(client)
    assert value(relayed, "gateway_outbox_backlog", kind="route") < value(after_submit, "gateway_outbox_backlog",
                                                                          kind="route")
    assert value(relayed, "gateway_queue_depth", queue=QUEUE) >= 1
    assert value(relayed, "gateway_queue_oldest_job_age_seconds", queue=QUEUE) >= 0
    # Labels hold queue names, outcomes and route templates only.
    text = client.get("/metrics").get_data(as_text=True)
    assert tenant.api_key not in text and "auth.pdf" not in text


def test_a_worker_exports_hand_over_latency(client, db, settings, clean_queues, tmp_path):
    tenant = make_tenant(db)
    submitted(client, tenant, FACILITY)
    relay.publish_due(db, RqDispatcher(build_redis(settings)), batch=1000)
    assert value(scrape(client), "gateway_queue_depth", queue=QUEUE) >= 1

    port = find_free_port()
    env = {**os.environ, **settings_environment(settings), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    log_path = new_log_path("metrics-worker", tmp_path)
    with log_path.open("wb") as log:
        worker = subprocess.Popen([str(Path(sys.executable).parent / "gateway"), "worker", "--facility", FACILITY,
                                   "--metrics-port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            exported, deadline = {}, time.monotonic() + 60
            while time.monotonic() < deadline and worker.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                        exported = samples(response.read().decode())
                except OSError:
                    pass
                if value(exported, "gateway_handover_seconds_count", queue=QUEUE) >= 1:
                    break
                time.sleep(0.3)
        finally:
            worker.send_signal(signal.SIGTERM)  # warm shutdown
            worker.wait(timeout=30)
    assert value(exported, "gateway_handover_seconds_count", queue=QUEUE) >= 1, log_path.read_text()[-2000:]
    assert value(exported, "gateway_handover_seconds_sum", queue=QUEUE) > 0
    assert value(exported, "gateway_handover_seconds_bucket", queue=QUEUE, le="+Inf") >= 1
    drained = scrape(client)
    assert value(drained, "gateway_queue_depth", queue=QUEUE) == 0
    assert value(drained, "gateway_queue_oldest_job_age_seconds", queue=QUEUE) == 0


def test_gunicorn_processes_are_summed(start_gateway, monkeypatch, tmp_path):
    """Multiprocess mode under gunicorn: /metrics sums every process's file in PROMETHEUS_MULTIPROC_DIR, including
    one left by a process that is gone (seeded here), and counts requests whichever worker served them."""
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    seeded = MmapedDict(str(tmp_path / "counter_999999.db"))  # a recycled worker's counters stay summed
    seeded.write_value(mmap_key("gateway_http_requests", "gateway_http_requests_total",  # family, then sample
                                ["method", "route", "status"], ["GET", "/healthz", "200"], "HTTP requests answered"),
                       1000.0, 0.0)
    seeded.close()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    gateway = start_gateway(workers=2)

    def healthz_count() -> float:
        with urllib.request.urlopen(f"{gateway.url}/metrics", timeout=10) as response:
            assert response.status == 200
            return value(samples(response.read().decode()), "gateway_http_requests_total",
                         method="GET", route="/healthz", status="200")

    before = healthz_count()
    assert before >= 1000  # the seeded file is read: multiprocess mode is on
    for _ in range(20):  # new connections: gunicorn's processes share them out
        with urllib.request.urlopen(f"{gateway.url}/healthz", timeout=10) as response:
            response.read()
    assert healthz_count() == before + 20
    assert {f"counter_{pid}.db" for pid in gateway.worker_pids()} <= {p.name for p in tmp_path.iterdir()}


def _exposition(folder) -> dict:
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(folder))
    return samples(generate_latest(registry).decode())


def test_files_of_finished_processes_are_folded_without_changing_any_sum(tmp_path):
    """An RQ work horse per job would leave one file per job: scraping folds the finished ones into an archive."""
    from gateway.metrics import compact_dead_processes

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for seconds in (0.3, 4.0):  # two finished "work horses", one hand-over each
        subprocess.run([sys.executable, "-c", "from gateway import metrics; "
                        f"metrics.HANDOVER_SECONDS.labels('{QUEUE}').observe({seconds}); "
                        "metrics.UPLOAD_BYTES.inc(100)"], env=env, check=True, timeout=60)
    before = _exposition(tmp_path)
    assert value(before, "gateway_handover_seconds_count", queue=QUEUE) == 2
    assert len(list(tmp_path.glob("histogram_*.db"))) == 2

    assert compact_dead_processes(str(tmp_path)) == 4  # two histogram files, two counter files
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["counter_archive.db", "histogram_archive.db"]
    assert _exposition(tmp_path) == before
    assert value(before, "gateway_upload_bytes_total") == 200

    subprocess.run([sys.executable, "-c", f"from gateway import metrics; "
                    f"metrics.HANDOVER_SECONDS.labels('{QUEUE}').observe(0.1)"], env=env, check=True, timeout=60)
    assert compact_dead_processes(str(tmp_path)) == 2
    after = _exposition(tmp_path)
    assert value(after, "gateway_handover_seconds_count", queue=QUEUE) == 3
    assert value(after, "gateway_handover_seconds_sum", queue=QUEUE) == pytest.approx(4.4)
    assert compact_dead_processes(str(tmp_path)) == 0  # the archives themselves are never folded


def test_the_relay_exports_route_jobs_published_again(settings, tmp_path):
    """`gateway outbox relay --metrics-port`: the counter dashboards alert on, from the relay's own port
    (its increments are proved in tests/routing/test_lost_routes.py)."""
    port = find_free_port()
    env = {**os.environ, **settings_environment(settings), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    log_path = new_log_path("metrics-relay", tmp_path)
    with log_path.open("wb") as log:
        relay_process = subprocess.Popen([str(Path(sys.executable).parent / "gateway"), "outbox", "relay",
                                          "--metrics-port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            exported, deadline = None, time.monotonic() + 60
            while exported is None and time.monotonic() < deadline and relay_process.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                        exported = samples(response.read().decode())
                except OSError:
                    time.sleep(0.3)
        finally:
            relay_process.send_signal(signal.SIGTERM)
            relay_process.wait(timeout=30)
    assert exported is not None, log_path.read_text()[-2000:]
    assert exported.get(("gateway_route_jobs_republished_total", ())) == 0  # exported from the start, at 0

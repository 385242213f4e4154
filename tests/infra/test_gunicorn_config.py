"""infra/gunicorn.conf.py: every name is a gunicorn setting or hook, and the process count follows the cores."""

from __future__ import annotations

import os
import runpy
import types

import gunicorn.config
import pytest

from infra import GUNICORN_CONFIG


@pytest.fixture
def config(monkeypatch, tmp_path):
    # Named beforehand, so loading the file makes no private metrics folder for this test process.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.delenv("GATEWAY_WEB_NICE", raising=False)
    return runpy.run_path(str(GUNICORN_CONFIG))


def test_every_name_is_a_gunicorn_setting(config):
    known = {setting.name for setting in gunicorn.config.KNOWN_SETTINGS}
    helpers = {"Path", "available_cores"}
    ours = {name for name, value in config.items()
            if not name.startswith("_") and not isinstance(value, types.ModuleType)} - helpers
    assert {"workers", "threads", "max_requests_jitter", "graceful_timeout", "child_exit"} <= ours
    assert ours <= known, sorted(ours - known)  # a misspelt setting would be silently ignored by gunicorn
    for hook in ("on_starting", "post_fork", "post_worker_init", "child_exit", "on_exit"):
        assert callable(config[hook])
    assert config["worker_class"] == "gateway.serving.GatewayThreadWorker"
    assert config["max_requests"] > 0 and 0 < config["max_requests_jitter"] < config["max_requests"]
    assert config["graceful_timeout"] >= config["timeout"]
    assert config["workers"] == max(2, len(os.sched_getaffinity(0)))


def test_the_process_count_follows_a_container_cpu_limit(config, tmp_path):
    available_cores = config["available_cores"]
    affinity = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("50000 100000\n")  # half a CPU: still one process
    assert available_cores(cpu_max) == 1
    cpu_max.write_text("150000 100000\n")  # 1.5 CPUs: two processes, if the machine has them
    assert available_cores(cpu_max) == min(affinity, 2)
    cpu_max.write_text("max 100000\n")
    assert available_cores(cpu_max) == affinity
    assert available_cores(tmp_path / "absent") == affinity


def test_the_metrics_folder_is_made_and_dead_workers_marked(config, tmp_path):
    config["on_starting"](None)
    assert (tmp_path / "metrics").is_dir()

    class Gone:
        pid = 999_999

    config["child_exit"](None, Gone())  # prometheus_client removes the live gauges of that pid; nothing to remove


def _niceness_after_post_fork(config) -> int:
    """post_fork run in a forked child, as gunicorn runs it; how much nicer the child became."""
    base = os.nice(0)
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status, touch nothing else
        try:
            config["post_fork"](None, None)
            os._exit(os.nice(0) - base)
        except BaseException:
            os._exit(99)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_web_workers_yield_the_cores_to_the_hand_over_path(config, monkeypatch):
    assert _niceness_after_post_fork(config) == min(5, 19 - os.nice(0))
    monkeypatch.setenv("GATEWAY_WEB_NICE", "0")
    assert _niceness_after_post_fork(runpy.run_path(str(GUNICORN_CONFIG))) == 0


def test_a_worker_freezes_its_start_up_objects_once_the_app_is_loaded(config):
    """post_worker_init takes what the app's start-up built out of the collector's full passes
    (gateway/startup_heap.py): they held a worker's GIL for about 200 ms each under load."""
    import gc

    gc.unfreeze()
    try:
        config["post_worker_init"](None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()

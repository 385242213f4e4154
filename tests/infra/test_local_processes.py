"""Local service processes: start, stop (unreachable), restart (reachable, same port)."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
import redis

from infra.localstack.moto import MotoServerProcess
from infra.localstack.ports import find_free_port
from infra.localstack.redis import RedisProcess


def redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)


def http_reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def test_find_free_port_is_bindable():
    port = find_free_port()
    assert 1024 < port < 65536


def test_redis_stop_and_restart_on_the_same_port(redis_service):
    url = redis_service.url
    client = redis_client(url)
    assert client.ping()
    client.set("probe", "1")

    redis_service.stop()
    assert not redis_service.is_running()
    with pytest.raises(redis.exceptions.ConnectionError):
        redis_client(url).ping()

    redis_service.restart()
    assert redis_service.url == url
    assert redis_client(url).ping()
    assert redis_client(url).get("probe") is None  # no persistence, by design


def test_redis_kill_then_start(redis_service):
    redis_service.kill()
    with pytest.raises(redis.exceptions.ConnectionError):
        redis_client(redis_service.url).ping()
    redis_service.start()
    assert redis_client(redis_service.url).ping()


def test_redis_fixture_comes_back_after_a_test_stopped_it(redis_url):
    # Runs after the tests above stopped/killed the server.
    assert redis_client(redis_url).ping()


@pytest.mark.integration  # starts a real redis-server
def test_redis_with_its_own_workdir(tmp_path):
    with RedisProcess(workdir=tmp_path) as server:
        assert redis_client(server.url).ping()
    assert not server.is_running()
    assert (tmp_path / "redis.log").exists()


def test_moto_stop_and_restart_on_the_same_port(moto_service):
    endpoint = moto_service.endpoint_url
    assert http_reachable(endpoint)

    moto_service.stop()
    assert not moto_service.is_running()
    assert not http_reachable(endpoint)

    moto_service.restart()
    assert moto_service.endpoint_url == endpoint
    assert http_reachable(endpoint)


def test_moto_kill_then_start(moto_service):
    moto_service.kill()
    assert not http_reachable(moto_service.endpoint_url)
    moto_service.start()
    assert moto_service.is_running()


def test_moto_restart_loses_state(moto_service):
    from infra.aws.bootstrap import aws_clients

    s3, _ = aws_clients(moto_service.endpoint_url, "us-east-1", "testing", "testing")
    s3.create_bucket(Bucket="restart-probe-bucket")
    moto_service.restart()
    names = [b["Name"] for b in s3.list_buckets().get("Buckets", [])]
    assert "restart-probe-bucket" not in names


@pytest.mark.integration  # starts a real moto server
def test_moto_refuses_a_taken_port():
    with MotoServerProcess() as first:
        second = MotoServerProcess(port=first.port)
        with pytest.raises((RuntimeError, TimeoutError)):
            second.start()
        second.close()
        assert first.is_running()

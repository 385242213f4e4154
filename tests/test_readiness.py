"""/readyz against the real services: 503 naming clamd while it is stopped, 200 once it is back."""

from __future__ import annotations


def test_ready_when_everything_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.get_json()
    checks = response.get_json()["checks"]
    assert set(checks) == {"database", "redis", "s3", "clamd"}
    assert all(check["ok"] for check in checks.values())
    assert checks["clamd"]["engine"].startswith("ClamAV")


def test_not_ready_names_clamd_while_it_is_stopped(client, clamd_service):
    clamd_service.stop()
    try:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.mimetype == "application/problem+json"
        body = response.get_json()
        assert body["code"] == "NOT_READY"
        assert body["unavailable"] == ["clamd"]
        assert "clamd" in body["detail"]
        assert response.headers["Retry-After"]
    finally:
        clamd_service.start()
    assert client.get("/readyz").status_code == 200


def test_not_ready_names_redis_while_it_is_stopped(client, redis_service):
    redis_service.stop()
    try:
        body = client.get("/readyz").get_json()
        assert body["unavailable"] == ["redis"]
    finally:
        redis_service.start()
    assert client.get("/readyz").status_code == 200

"""The API skeleton: problem+json for every error, request ids, OpenAPI, the facility catalogue."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate

from gateway.app import create_app
from gateway.auth import web as auth_web

PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "request_id", "errors"}


def assert_problem(response, status: int, code: str):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert PROBLEM_KEYS <= set(body)
    assert body["status"] == status and body["code"] == code
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


def test_unknown_path_is_404_problem(client):
    assert_problem(client.get("/v1/no-such-thing"), 404, "NOT_FOUND")


def test_wrong_method_is_405_problem_with_allow(client):
    response = client.delete("/v1/facilities")
    assert_problem(response, 405, "METHOD_NOT_ALLOWED")
    assert "GET" in response.headers["Allow"]


def test_exception_in_view_is_500_problem_without_trace(settings, monkeypatch):
    app = create_app(settings)

    detail = "secret detail: patient Ana Silva 1980-02-29"

    @app.route("/boom")
    def boom():
        raise RuntimeError(detail)  # the logged stack quotes this line: the PHI stays out of it

    monkeypatch.setattr(auth_web, "PUBLIC_RULES", auth_web.PUBLIC_RULES | {"/boom"})
    response = app.test_client().get("/boom")
    body = assert_problem(response, 500, "INTERNAL_ERROR")
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "Ana Silva" not in text and "RuntimeError" not in text
    assert body["request_id"]


def test_request_id_is_echoed_when_safe_and_generated_otherwise(client):
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id {x}"}).headers["X-Request-ID"]
    assert generated and " " not in generated and generated != "bad id {x}"
    assert client.get("/healthz").headers["X-Request-ID"]


def test_malformed_json_is_400_problem(client):
    response = client.post("/v1/auth/token", data="{not json", content_type="application/json")
    assert response.status_code in (400, 422)
    assert response.mimetype == "application/problem+json"


def test_openapi_document_validates(client):
    spec = client.get("/openapi.json").get_json()
    validate(spec)
    assert spec["openapi"].startswith("3.")
    assert "/v1/facilities" in spec["paths"]
    assert "Problem" in spec["components"]["schemas"]


def test_docs_page_is_served(client):
    response = client.get("/docs")
    assert response.status_code == 200
    assert b"swagger" in response.data.lower()


def test_facilities_lists_the_four_choices(client):
    response = client.get("/v1/facilities")
    assert response.status_code == 200
    facilities = {f["code"]: f for f in response.get_json()}
    assert set(facilities) == {"lowell-general", "melrosewakefield", "tufts-mc", "community-practices"}
    assert facilities["tufts-mc"]["name"] == "Tufts Medical Center"
    for facility in facilities.values():
        assert set(facility) == {"code", "name", "accepts_electronic", "turnaround_days"}
        assert facility["accepts_electronic"] is True


def test_healthz_and_metrics(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    client.get("/v1/facilities")
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert b"gateway_http_requests_total" in metrics.data
    assert b'route="/v1/facilities"' in metrics.data


@pytest.mark.parametrize("header", ["X-Content-Type-Options", "Cache-Control"])
def test_security_headers(client, header):
    assert header in client.get("/healthz").headers

"""The OpenAPI document's promises, read from the document itself (gateway/openapi.py builds them).

No service is needed: the app is built on a throwaway SQLite file and only its
/openapi.json is read.  tests/test_openapi_conformance.py checks the same
document against a live gateway with schemathesis.
"""

from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate

from gateway.app import create_app
from gateway.auth.web import PUBLIC_RULES
from gateway.settings import Settings

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    directory = tmp_path_factory.mktemp("openapi")
    app = create_app(Settings.from_env({}, env="test", data_dir=directory,
                                       database_url=f"sqlite:///{directory / 'gateway.db'}"))
    return app.test_client().get("/openapi.json").get_json()


def operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def resolve(spec, node):
    while "$ref" in node:
        *_, kind, name = node["$ref"].split("/")
        node = spec["components"][kind][name]
    return node


def test_the_document_is_valid_openapi_3_1(spec):
    validate(spec)
    assert spec["openapi"] == "3.1.0"
    assert len({op["operationId"] for _, _, op in operations(spec)}) == len(list(operations(spec)))


def test_every_error_is_problem_json_and_every_response_names_its_request_id(spec):
    for path, method, operation in operations(spec):
        assert "default" not in operation["responses"], (method, path)
        for status, declared in operation["responses"].items():
            response = resolve(spec, declared)
            assert "X-Request-ID" in response.get("headers", {}), (method, path, status)
            if int(status) >= 400:
                assert list(response["content"]) == ["application/problem+json"], (method, path, status)
                assert response["content"]["application/problem+json"]["schema"] == {
                    "$ref": "#/components/schemas/Problem"}
            if status in {"429", "503"}:
                assert "Retry-After" in response["headers"], (method, path, status)


def test_each_operation_lists_the_errors_its_route_can_send(spec):
    for path, method, operation in operations(spec):
        statuses = set(operation["responses"])
        public = re.sub(r"\{([^}]+)\}", r"<\1>", path) in PUBLIC_RULES
        assert {"400", "414", "431"} <= statuses, (method, path)
        if not public:
            assert {"401", "429"} <= statuses and operation["security"] == [{"bearer": []}], (method, path)
            assert "WWW-Authenticate" in resolve(spec, operation["responses"]["401"])["headers"]
        else:
            assert operation["security"] == []
        if "{" in path:
            assert "404" in statuses, (method, path)
        names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
        if "Idempotency-Key" in names:
            assert {"409", "422"} <= statuses, (method, path)
        if "If-Match" in names:
            assert "412" in statuses, (method, path)
        if "requestBody" in operation:
            assert {"400", "413", "422"} <= statuses, (method, path)


def test_success_responses_carry_their_headers(spec):
    for path, method, operation in operations(spec):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                continue
            headers = response.get("headers", {})
            schema = response.get("content", {}).get("application/json", {}).get("schema", {})
            if schema.get("$ref", "").endswith("/Request"):
                assert "ETag" in headers, (method, path, status)
            if status in {"204", "302"}:
                assert "content" not in response, (method, path, status)
            if status == "302":
                assert "Location" in headers
    for path, method in [("/v1/requests", "post"), ("/v1/requests/{request_id}/documents", "post"),
                         ("/v1/orgs/{org_id}/api-keys", "post"), ("/v1/webhooks", "post")]:
        assert "Location" in spec["paths"][path][method]["responses"]["201"]["headers"]


def test_header_parameters_and_cursors_say_their_format(spec):
    idempotency = spec["paths"]["/v1/requests"]["post"]["parameters"]
    key = next(p for p in idempotency if p["name"] == "Idempotency-Key")["schema"]
    assert key["pattern"] == r"^[\x21-\x7e]{1,255}$" and key["maxLength"] == 255
    for _path, _method, operation in operations(spec):
        for parameter in operation.get("parameters", []):
            if parameter["name"] == "cursor":
                assert "INVALID_CURSOR" in parameter["description"]
                assert "INVALID_CURSOR" in resolve(spec, operation["responses"]["400"])["description"]


def test_bodies_name_their_parts_and_media_types(spec):
    upload = spec["paths"]["/v1/requests/{request_id}/documents"]["post"]["requestBody"]["content"]
    form = upload["multipart/form-data"]
    assert set(form["schema"]["properties"]) == {"kind", "file"} and set(form["encoding"]) == {"kind", "file"}
    one_shot = spec["paths"]["/v1/requests"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert one_shot["encoding"]["request"]["contentType"] == "application/json"
    assert "authorization" in one_shot["schema"]["properties"]
    patch = spec["paths"]["/v1/requests/{request_id}"]["patch"]["requestBody"]["content"]
    assert set(patch) == {"application/merge-patch+json", "application/json"}
    assert {c["schema"]["$ref"] for c in patch.values()} == {"#/components/schemas/RequestCreatePatch"}
    merge_patch = spec["components"]["schemas"]["RequestCreatePatch"]
    assert "required" not in merge_patch and merge_patch["additionalProperties"] is False


def test_create_links_to_what_a_client_does_next(spec):
    links = spec["paths"]["/v1/requests"]["post"]["responses"]["201"]["links"]
    targets = {link["operationId"] for link in links.values()}
    assert {"get_request", "submit_request", "upload_document"} <= targets
    ids = {op["operationId"] for _, _, op in operations(spec)}
    for path, method, operation in operations(spec):
        for response in operation["responses"].values():
            for link in response.get("links", {}).values():
                assert link["operationId"] in ids, (method, path, link)


def test_the_unauthenticated_endpoints_say_what_they_return(spec):
    jwks = spec["paths"]["/.well-known/jwks.json"]["get"]["responses"]["200"]["content"]["application/json"]
    assert jwks["schema"]["required"] == ["keys"]
    assert "text/plain" in spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert "503" in spec["paths"]["/readyz"]["get"]["responses"]
    assert set(spec["paths"]["/healthz"]["get"]["responses"]) == {"200", "400", "414", "431"}

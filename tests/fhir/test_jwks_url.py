"""`gateway fhir-clients create --jwks-url`: the keys fetched through the SSRF guard, cached, and used."""

from __future__ import annotations

import http.server
import json
import threading
import uuid

import pytest
from click.testing import CliRunner

from gateway.cli import fhir, main  # noqa: F401 (fhir registers the fhir-clients commands)
from tests.factories import make_tenant
from tests.fhir.helpers import Payer, new_key, public_jwk
from tests.fixtures.live import settings_environment

# One database (tests/conftest.py): fetching a client's JWKS.
pytestmark = pytest.mark.one_database

TOKEN_URL = "http://localhost/oauth/token"


def _serve(body: bytes):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/jwks.json"


def _create(settings, org_id: str, url: str, *, allow_private: bool):
    env = {**settings_environment(settings), "GATEWAY_WEBHOOK_ALLOW_PRIVATE": "true" if allow_private else "false"}
    return CliRunner().invoke(main, ["fhir-clients", "create", "--org", org_id, "--jwks-url", url, "--json"], env=env)


def test_a_jwks_url_is_fetched_through_the_ssrf_guard_and_its_keys_open_the_token_endpoint(client, db, settings):
    tenant = make_tenant(db, "insurer")
    key, kid = new_key("ES384"), uuid.uuid4().hex[:8]
    server, url = _serve(json.dumps({"keys": [public_jwk(key, kid, "ES384")]}).encode())
    try:
        refused = _create(settings, tenant.org_id, url, allow_private=False)  # loopback: refused by the guard
        assert refused.exit_code == 1 and "JWKS_INVALID" in refused.output
        created = _create(settings, tenant.org_id, url, allow_private=True)  # an operator's local stack
        assert created.exit_code == 0, created.output
    finally:
        server.shutdown()
    payer = Payer(json.loads(created.stdout)["client_id"], key, kid, "ES384")
    # The server is gone: the keys cached at registration still serve.
    response = client.post("/oauth/token", data=payer.form(TOKEN_URL))
    assert response.status_code == 200, response.get_json()


def test_a_jwks_holding_a_private_key_is_refused(db, settings, tmp_path):
    tenant = make_tenant(db, "insurer")
    key = new_key("RS384")
    import jwt
    from cryptography.hazmat.primitives import serialization  # noqa: F401

    private = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key))
    path = tmp_path / "private.json"
    path.write_text(json.dumps({"keys": [private]}))
    result = CliRunner().invoke(main, ["fhir-clients", "create", "--org", tenant.org_id, "--jwks-file", str(path),
                                       "--json"], env=settings_environment(settings))
    assert result.exit_code == 1 and "private key" in result.output

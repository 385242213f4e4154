"""Webhooks: registration, SSRF refusals, signed deliveries to a real local receiver, retries and tenancy."""

from __future__ import annotations

import dataclasses
import datetime as dt
import http.server
import json
import socket
import ssl
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from gateway.app import create_app
from gateway.audit.models import AuditEvent
from gateway.auth.models import User
from gateway.auth.principal import Principal
from gateway.crypto import unseal
from gateway.errors import Unprocessable
from gateway.idempotency import IdempotencyRecord
from gateway.webhooks import sender, service
from gateway.webhooks.jobs import deliver_job
from gateway.webhooks.models import Webhook, WebhookDelivery
from gateway.webhooks.service import claim_due, deliver, emit
from gateway.webhooks.signing import sign, verify
from gateway.webhooks.ssrf import WebhookUrlForbidden, check_target, pinned_post
from tests.factories import bearer, make_tenant, make_user, sign_in

PUBLIC_URL = "https://93.184.216.34/hooks"  # an IP literal: resolves without DNS, never contacted
STATUS = "request.status_changed"


# --- a real HTTP(S) receiver on loopback --------------------------------------------------------------------


class Receiver:
    """A threaded HTTP server answering scripted statuses and recording every request it gets."""

    def __init__(self, statuses=(200,), *, delay: float = 0.0, tls: tuple[str, str] | None = None):
        self.statuses, self.delay, self.requests = list(statuses), delay, []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((self.path, dict(self.headers), body))
                time.sleep(receiver.delay)
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", f"http://127.0.0.1:{receiver.port}/target")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook", host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def paths(self) -> list[str]:
        return [path for path, _headers, _body in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    started: list[Receiver] = []

    def start(*statuses, **kwargs) -> Receiver:
        receiver = Receiver(statuses or (200,), **kwargs)
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def fake_dns(monkeypatch):
    """Answers for chosen names (everything else resolves for real); change them between calls to rebind."""
    answers: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                    for a in answers[host]]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


# --- signatures ------------------------------------------------------------------------------------------------


def test_signature_round_trip_and_every_way_it_fails():
    body, now = b'{"id":"e1","type":"request.status_changed"}', 1_800_000_000
    header = sign("s3cret", body, now)
    assert header.startswith(f"t={now},v1=") and len(header.split("v1=")[1]) == 64
    assert verify("s3cret", header, body, now=now + 10)
    assert verify("s3cret", f"{header},v1={'0' * 64}", body, now=now)  # rotation: any v1 may match
    assert not verify("other", header, body, now=now)
    assert not verify("s3cret", header, body + b" ", now=now)
    assert not verify("s3cret", header, body, now=now + 301)  # replayed too late
    assert not verify("s3cret", header.replace(f"t={now}", f"t={now + 1}"), body, now=now)
    for garbage in ("", None, "v1=abc", f"t={now}", "t=x,v1=y", "nonsense"):
        assert not verify("s3cret", garbage, body, now=now)


# --- SSRF -------------------------------------------------------------------------------------------------------

FORBIDDEN_URLS = [
    "http://127.0.0.1/hook", "https://localhost/hook", "https://localhost./hook", "https://10.0.0.5/hook",
    "https://172.16.3.4/", "https://192.168.1.1:8443/", "https://169.254.169.254/latest/meta-data",
    "https://[::1]/hook", "https://[::ffff:127.0.0.1]/hook", "https://[::ffff:169.254.169.254]/",
    "https://[fd00:ec2::254]/latest", "https://[fe80::1]/", "https://100.64.0.1/", "https://0.0.0.0/",
    "https://224.0.0.1/", "https://255.255.255.255/", "https://2130706433/", "https://0x7f.1/",
    "https://[64:ff9b::7f00:1]/", "https://[2002:7f00:1::]/", "https://[::]/",
    "ftp://93.184.216.34/hook", "http://93.184.216.34/hook", "https://user:pass@93.184.216.34/hook",
    "https://user@93.184.216.34/hook", "https://@93.184.216.34/", "javascript:alert(1)", "https:///nohost",
    "https://93.184.216.34/a b", "https://93.184.216.34:99999/", "", "x" * 2001,
]


@pytest.mark.parametrize("url", FORBIDDEN_URLS)
def test_check_target_refuses(url):
    with pytest.raises(WebhookUrlForbidden) as caught:
        check_target(url, allow_private=False)
    assert caught.value.status == 422 and caught.value.code == "WEBHOOK_URL_FORBIDDEN"


def test_check_target_accepts_public_addresses_and_keeps_the_name():
    target = check_target("https://93.184.216.34/hooks?tenant=7", allow_private=False)
    assert target.addresses == ("93.184.216.34",) and target.path == "/hooks?tenant=7"
    assert target.host_header == "93.184.216.34"
    v6 = check_target("https://[2606:4700::6810:84e5]:8443/h", allow_private=False)
    assert v6.host_header == "[2606:4700::6810:84e5]:8443" and v6.port == 8443


def test_names_are_judged_by_every_address_they_resolve_to(fake_dns):
    fake_dns["internal.example.test"] = ["127.0.0.1"]
    fake_dns["mixed.example.test"] = ["93.184.216.34", "10.1.2.3"]
    fake_dns["metadata.example.test"] = ["169.254.169.254"]
    fake_dns["public.example.test"] = ["93.184.216.34", "2606:4700::6810:84e5"]
    for name in ("internal", "mixed", "metadata"):
        with pytest.raises(WebhookUrlForbidden):
            check_target(f"https://{name}.example.test/hook", allow_private=False)
    assert check_target("https://public.example.test/h", allow_private=False).addresses == (
        "93.184.216.34", "2606:4700::6810:84e5")
    fake_dns["gone.example.test"] = []
    with pytest.raises(WebhookUrlForbidden) as caught:
        check_target("https://gone.example.test/hook", allow_private=False)
    assert caught.value.reason == "unresolvable"


def test_operator_may_allow_private_targets_but_never_credentials():
    assert check_target("http://127.0.0.1:8080/x", allow_private=True).addresses == ("127.0.0.1",)
    with pytest.raises(WebhookUrlForbidden):
        check_target("http://u:p@127.0.0.1:8080/x", allow_private=True)
    with pytest.raises(WebhookUrlForbidden):
        check_target("ftp://127.0.0.1/x", allow_private=True)


def test_send_time_rebinding_to_loopback_is_refused_before_connecting(fake_dns, receivers):
    receiver = receivers(200)
    fake_dns["rebind.example.test"] = ["93.184.216.34"]
    url = f"http://rebind.example.test:{receiver.port}/hook"
    check_target(url.replace("http:", "https:"), allow_private=False)  # passes at registration
    fake_dns["rebind.example.test"] = ["127.0.0.1"]  # the attacker's DNS now answers loopback
    with pytest.raises(WebhookUrlForbidden):
        pinned_post(url.replace("http:", "https:"), body=b"{}", headers={}, timeout=2, allow_private=False)
    assert receiver.requests == []


def test_pinned_post_connects_to_the_checked_address_under_the_urls_name(fake_dns, receivers):
    receiver = receivers(204)
    fake_dns["hooks.example.test"] = ["127.0.0.1"]
    status = pinned_post(receiver.url(host="hooks.example.test"), body=b'{"a":1}',
                         headers={"Content-Type": "application/json"}, timeout=2, allow_private=True)
    assert status == 204
    (path, headers, body), = receiver.requests
    assert path == "/hook" and body == b'{"a":1}' and headers["Host"] == f"hooks.example.test:{receiver.port}"


def _certificate(tmp_path, name: str) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_https_to_the_pinned_address_verifies_the_certificate_against_the_name(tmp_path, fake_dns, receivers):
    cert, key = _certificate(tmp_path, "hooks.example.test")
    receiver = receivers(200, tls=(cert, key))
    fake_dns["hooks.example.test"] = ["127.0.0.1"]
    fake_dns["impostor.example.test"] = ["127.0.0.1"]
    url = receiver.url(host="hooks.example.test", scheme="https")
    assert pinned_post(url, body=b"{}", headers={}, timeout=3, allow_private=True, ca_certs=cert) == 200
    assert receiver.requests[0][1]["Host"] == f"hooks.example.test:{receiver.port}"
    # Same address, another name: the certificate does not match, nothing is sent.
    with pytest.raises(Exception) as caught:
        pinned_post(receiver.url(host="impostor.example.test", scheme="https"), body=b"{}", headers={},
                    timeout=3, allow_private=True, ca_certs=cert)
    assert sender.error_reason(caught.value) == "tls_error"
    assert len(receiver.requests) == 1


def test_retry_delay_doubles_with_jitter_and_is_capped():
    for attempts, base in ((1, 30), (2, 60), (3, 120), (8, 3840)):
        for _ in range(20):
            assert base * 0.8 <= service.retry_delay(attempts).total_seconds() <= base * 1.2
    assert max(service.retry_delay(30).total_seconds() for _ in range(50)) <= 6 * 3600


# --- the API ---------------------------------------------------------------------------------------------------


@pytest.fixture
def tenant(db):
    return make_tenant(db)


@pytest.fixture(scope="module")
def login(db, tokens):
    """Headers for a portal user by email, with a token from the real TokenService (sign-in is rate limited)."""
    def headers(email: str) -> dict:
        with db.transaction() as session:
            user = session.scalars(select(User).where(User.email == email)).one()
            issued = tokens.issue(subject=user.id, org_id=user.org_id, roles=list(user.roles),
                                  facilities=list(user.facilities))
        return bearer(issued.access_token)
    return headers


def _create(client, headers, url=PUBLIC_URL, events=(STATUS,), **extra):
    return client.post("/v1/webhooks", headers={**headers, **extra}, json={"url": url, "events": list(events)})


def test_registration_shows_the_secret_once_and_keeps_it_sealed(client, db, settings, tenant):
    admin = sign_in(client, tenant.admin_email)
    response = _create(client, admin, events=[STATUS, "request.document_added"])
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    secret, webhook_id = created["secret"], created["id"]
    assert len(secret) >= 40 and created["org"] == tenant.org_id and created["active"] is True
    assert created["events"] == [STATUS, "request.document_added"]
    assert response.headers["Location"].endswith(f"/v1/webhooks/{webhook_id}")

    shown = client.get(f"/v1/webhooks/{webhook_id}", headers=admin).get_json()
    assert "secret" not in shown and shown["url"] == PUBLIC_URL
    listed = client.get("/v1/webhooks", headers=admin).get_json()
    assert [w["id"] for w in listed["items"]] == [webhook_id] and "secret" not in listed["items"][0]

    with db.transaction() as session:
        row = session.get(Webhook, webhook_id)
        assert secret not in row.secret_sealed
        assert unseal(settings.secret_key, row.secret_sealed, purpose="webhook") == secret
        actions = session.scalars(select(AuditEvent.action).where(AuditEvent.object_id == webhook_id)).all()
    assert "webhook.create" in actions


def test_an_idempotent_replay_never_shows_or_stores_the_secret(client, db, tenant, login):
    admin = login(tenant.admin_email)
    key = {"Idempotency-Key": f"wh-{uuid.uuid4()}"}
    first = _create(client, admin, **key)
    again = _create(client, admin, **key)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == first.get_json()["id"] and "secret" not in again.get_json()
    with db.transaction() as session:
        stored = session.scalars(select(IdempotencyRecord).where(IdempotencyRecord.key == key["Idempotency-Key"])).one()
        assert first.get_json()["secret"] not in json.dumps(stored.response_body)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/hook", "https://localhost/hook", "https://10.0.0.5/hook",
    "https://169.254.169.254/latest/meta-data", "https://[::1]/hook", "https://[::ffff:127.0.0.1]/hook",
    "ftp://93.184.216.34/hook", "https://user:pass@93.184.216.34/hook",
])
def test_forbidden_targets_are_refused_with_422(client, db, tenant, url, login):
    response = _create(client, login(tenant.admin_email), url=url)
    assert response.status_code == 422
    problem = response.get_json()
    assert problem["code"] == "WEBHOOK_URL_FORBIDDEN" and problem["errors"][0]["field"] == "url"
    assert response.mimetype == "application/problem+json"
    with db.transaction() as session:
        assert session.scalars(select(Webhook).where(Webhook.org_id == tenant.org_id)).all() == []


def test_a_name_resolving_to_loopback_is_refused_through_the_api(client, tenant, fake_dns, login):
    fake_dns["sneaky.example.test"] = ["127.0.0.1"]
    response = _create(client, login(tenant.admin_email), url="https://sneaky.example.test/hook")
    assert response.status_code == 422 and response.get_json()["code"] == "WEBHOOK_URL_FORBIDDEN"


def test_unknown_event_types_and_missing_fields_are_422(client, tenant, login):
    admin = login(tenant.admin_email)
    assert _create(client, admin, events=["request.deleted"]).status_code == 422
    assert _create(client, admin, events=[]).status_code == 422
    assert client.post("/v1/webhooks", headers=admin, json={"events": [STATUS]}).status_code == 422


def test_requesters_and_api_keys_cannot_manage_webhooks(client, db, tenant, login):
    admin = login(tenant.admin_email)
    webhook_id = _create(client, admin).get_json()["id"]
    for headers in (login(tenant.requester_email), bearer(tenant.api_key),
                    login(make_user(db, ["facility_staff"], ["tufts-mc"]))):
        assert _create(client, headers).status_code == 403
        assert client.get("/v1/webhooks", headers=headers).status_code == 403
        assert client.get(f"/v1/webhooks/{webhook_id}", headers=headers).status_code == 403
        assert client.delete(f"/v1/webhooks/{webhook_id}", headers=headers).status_code == 403
        assert client.get(f"/v1/webhooks/{webhook_id}/deliveries", headers=headers).status_code == 403


def test_another_tenants_webhook_is_a_404_identical_to_a_missing_one(client, db, tenant, login):
    other = make_tenant(db, "insurer")
    webhook_id = _create(client, login(tenant.admin_email)).get_json()["id"]
    intruder, missing = login(other.admin_email), str(uuid.uuid4())

    def strip(response):
        return {k: v for k, v in response.get_json().items() if k != "request_id"}

    for suffix in ("", "/deliveries"):
        theirs = client.get(f"/v1/webhooks/{webhook_id}{suffix}", headers=intruder)
        absent = client.get(f"/v1/webhooks/{missing}{suffix}", headers=intruder)
        assert theirs.status_code == absent.status_code == 404 and strip(theirs) == strip(absent)
    assert client.delete(f"/v1/webhooks/{webhook_id}", headers=intruder).status_code == 404
    assert client.get("/v1/webhooks", headers=intruder).get_json()["items"] == []
    operator = login(make_user(db, ["gateway_admin"]))  # operators manage users, not an organization's webhooks
    assert client.get(f"/v1/webhooks/{webhook_id}", headers=operator).status_code == 403


def test_delete_deactivates_and_abandons_pending_deliveries(client, db, settings, tenant, login):
    admin = login(tenant.admin_email)
    webhook_id = _create(client, admin).get_json()["id"]
    with db.transaction() as session:
        [delivery] = emit(session, org_id=tenant.org_id, event_type=STATUS, data={"request_id": str(uuid.uuid4()),
                                                                                   "status": "routed"})
    assert client.delete(f"/v1/webhooks/{webhook_id}", headers=admin).status_code == 204
    assert client.get(f"/v1/webhooks/{webhook_id}", headers=admin).status_code == 404
    assert client.get("/v1/webhooks", headers=admin).get_json()["items"] == []
    assert client.delete(f"/v1/webhooks/{webhook_id}", headers=admin).status_code == 404

    def must_not_send(*args, **kwargs):
        raise AssertionError("a deleted webhook was called")

    assert deliver(db, delivery.id, settings=settings, http_post=must_not_send) == "abandoned"
    with db.transaction() as session:
        assert session.get(WebhookDelivery, delivery.id).state == "abandoned"
        assert session.get(Webhook, webhook_id).active is False
        assert emit(session, org_id=tenant.org_id, event_type=STATUS, data={"status": "fulfilled"}) == []


# --- events and claiming -------------------------------------------------------------------------------------


def _principal(tenant) -> Principal:
    return Principal(kind="user", id=tenant.admin_id, org_id=tenant.org_id, org_kind=tenant.kind,
                     roles=frozenset({"requester_admin"}))


@pytest.mark.parametrize("data", [
    {"request_id": "r1", "patient_name": "Ana Silva"},
    {"request_id": "r1", "patient": {"first_name": "Ana"}},
    {"status": "Ana Silva"},  # free text in an allowed key
    {"reasons": [{"note": "DOB 1980-02-29"}]},
    {"reasons": "INCOMPLETE"},
    {"request_id": 12345},
])
def test_emit_refuses_anything_but_ids_statuses_and_codes(db, tenant, data):
    with db.transaction() as session, pytest.raises(ValueError):
        emit(session, org_id=tenant.org_id, event_type=STATUS, data=data)


def test_emit_queues_one_delivery_per_subscribed_active_webhook(db, settings, tenant):
    with db.transaction() as session:
        status_hook, _ = service.create_webhook(session, principal=_principal(tenant), url=PUBLIC_URL,
                                                events=[STATUS], settings=settings)
        service.create_webhook(session, principal=_principal(tenant), url=PUBLIC_URL,
                               events=["request.document_added"], settings=settings)
    request_id = str(uuid.uuid4())
    occurred = datetime(2026, 11, 23, 18, 16, tzinfo=UTC)
    with db.transaction() as session:
        deliveries = emit(session, org_id=tenant.org_id, event_type=STATUS,
                          data={"request_id": request_id, "status": "returned", "previous_status": "in_progress",
                                "reasons": ["UNREADABLE"], "occurred_at": occurred})
        assert [d.webhook_id for d in deliveries] == [status_hook.id]
        payload = deliveries[0].payload
        assert set(payload) == {"id", "type", "created_at", "data"} and payload["type"] == STATUS
        assert payload["created_at"].endswith("Z") and deliveries[0].event_id == payload["id"]
        assert payload["data"] == {"request_id": request_id, "status": "returned", "previous_status": "in_progress",
                                   "reasons": ["UNREADABLE"], "occurred_at": "2026-11-23T18:16:00.000Z"}
        again = emit(session, org_id=tenant.org_id, event_type=STATUS, data={"status": "returned"},
                     event_id=payload["id"])
        assert again == []  # the same event is never queued twice for a webhook
        with pytest.raises(ValueError):
            emit(session, org_id=tenant.org_id, event_type="request.exploded", data={})


def test_an_organization_has_at_most_ten_webhooks(db, settings, tenant):
    with db.transaction() as session:
        for _ in range(service.MAX_WEBHOOKS_PER_ORG):
            service.create_webhook(session, principal=_principal(tenant), url=PUBLIC_URL, events=[STATUS],
                                   settings=settings)
        with pytest.raises(Unprocessable) as caught:
            service.create_webhook(session, principal=_principal(tenant), url=PUBLIC_URL, events=[STATUS],
                                   settings=settings)
    assert caught.value.code == "WEBHOOK_LIMIT_REACHED"


def test_claim_due_hands_each_due_delivery_out_once_per_lease(db, settings, tenant):
    with db.transaction() as session:
        service.create_webhook(session, principal=_principal(tenant), url=PUBLIC_URL, events=[STATUS],
                               settings=settings)
        [delivery] = emit(session, org_id=tenant.org_id, event_type=STATUS, data={"status": "routed"})
    now = datetime.now(UTC) + timedelta(seconds=1)
    with db.transaction() as session:
        first = claim_due(session, now=now, limit=1000, lease=timedelta(minutes=5))
    with db.transaction() as session:
        second = claim_due(session, now=now, limit=1000, lease=timedelta(minutes=5))
    assert delivery.id in first and delivery.id not in second
    with db.transaction() as session:  # once the lease runs out without a result, it is due again
        assert delivery.id in claim_due(session, now=now + timedelta(minutes=6), limit=1000, lease=timedelta(minutes=5))


# --- delivering to a real receiver -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def private_settings(settings):
    return dataclasses.replace(settings, webhook_allow_private=True, webhook_timeout=2.0)


@pytest.fixture(scope="module")
def private_app(private_settings):
    """The gateway as an operator runs it for a local stack: private webhook targets allowed."""
    application = create_app(private_settings)
    yield application
    application.extensions["gateway"].db.dispose()


def _register_local(private_app, headers, url) -> tuple[str, str]:
    response = _create(private_app.test_client(), headers, url=url)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"], response.get_json()["secret"]


def _emit(db, tenant, **data) -> WebhookDelivery:
    with db.transaction() as session:
        [delivery] = emit(session, org_id=tenant.org_id, event_type=STATUS,
                          data={"request_id": str(uuid.uuid4()), "status": "routed", **data})
    return delivery


def _row(db, delivery_id) -> WebhookDelivery:
    with db.transaction() as session:
        return session.get(WebhookDelivery, delivery_id)


def test_a_signed_delivery_reaches_the_receiver(db, private_app, private_settings, tenant, receivers, login):
    receiver = receivers(200)
    webhook_id, secret = _register_local(private_app, login(tenant.admin_email), receiver.url())
    delivery = _emit(db, tenant, previous_status="submitted")
    assert deliver(db, delivery.id, settings=private_settings) == "delivered"

    (path, headers, body), = receiver.requests
    assert path == "/hook" and verify(secret, headers["Gateway-Signature"], body)
    assert not verify("another-secret", headers["Gateway-Signature"], body)
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "records-gateway-webhooks/1"
    assert headers["Gateway-Event-Id"] == delivery.event_id and headers["Gateway-Delivery-Id"] == delivery.id
    assert json.loads(body) == delivery.payload and b"Silva" not in body

    row = _row(db, delivery.id)
    assert (row.state, row.attempts, row.last_status_code, row.last_error) == ("delivered", 1, 200, None)
    assert row.delivered_at is not None and row.next_attempt_at is None
    assert deliver(db, delivery.id, settings=private_settings) == "delivered"  # a second run sends nothing
    assert len(receiver.requests) == 1

    log = private_app.test_client().get(f"/v1/webhooks/{webhook_id}/deliveries",
                                        headers=login(tenant.admin_email)).get_json()
    [entry] = log["items"]
    assert entry["id"] == delivery.id and entry["state"] == "delivered" and entry["attempts"] == 1
    assert entry["last_status_code"] == 200 and "payload" not in entry


def test_a_5xx_is_retried_later_then_delivered(db, private_app, private_settings, tenant, receivers, login):
    receiver = receivers(500, 200)
    webhook_id, secret = _register_local(private_app, login(tenant.admin_email), receiver.url())
    delivery = _emit(db, tenant)
    t0 = delivery.created_at + timedelta(seconds=1)
    assert deliver(db, delivery.id, settings=private_settings, now=t0) == "pending"
    row = _row(db, delivery.id)
    assert (row.attempts, row.last_status_code, row.last_error) == (1, 500, "http_500")
    assert t0 + timedelta(seconds=24) <= row.next_attempt_at <= t0 + timedelta(seconds=36)

    with db.transaction() as session:
        assert delivery.id not in claim_due(session, now=t0 + timedelta(seconds=20), limit=1000,
                                            lease=timedelta(minutes=5))
    retry_at = row.next_attempt_at + timedelta(seconds=1)
    with db.transaction() as session:
        assert delivery.id in claim_due(session, now=retry_at, limit=1000, lease=timedelta(minutes=5))
    assert deliver(db, delivery.id, settings=private_settings, now=retry_at) == "delivered"
    row = _row(db, delivery.id)
    assert (row.state, row.attempts, row.last_status_code) == ("delivered", 2, 200)
    assert [h["Gateway-Event-Id"] for _p, h, _b in receiver.requests] == [delivery.event_id] * 2
    assert all(verify(secret, h["Gateway-Signature"], b, now=retry_at.timestamp()) for _p, h, b in
               receiver.requests[1:])

    admin = login(tenant.admin_email)
    delivered = private_app.test_client().get(f"/v1/webhooks/{webhook_id}/deliveries?state=delivered",
                                              headers=admin).get_json()["items"]
    assert [(d["id"], d["attempts"]) for d in delivered] == [(delivery.id, 2)]
    pending = private_app.test_client().get(f"/v1/webhooks/{webhook_id}/deliveries?state=pending",
                                            headers=admin).get_json()["items"]
    assert pending == []


def test_a_4xx_fails_without_retry(db, private_app, private_settings, tenant, receivers, login):
    receiver = receivers(404)
    _register_local(private_app, login(tenant.admin_email), receiver.url())
    delivery = _emit(db, tenant)
    assert deliver(db, delivery.id, settings=private_settings) == "failed"
    row = _row(db, delivery.id)
    assert (row.attempts, row.last_status_code, row.last_error, row.next_attempt_at) == (1, 404, "http_404", None)
    assert deliver(db, delivery.id, settings=private_settings) == "failed"
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("status", [408, 429, 503])
def test_408_429_and_5xx_are_retried(db, settings, tenant, status):
    with db.transaction() as session:
        service.create_webhook(session, principal=_principal(tenant), url=PUBLIC_URL, events=[STATUS],
                               settings=settings)
    delivery = _emit(db, tenant)
    assert deliver(db, delivery.id, settings=settings, http_post=lambda *a, **k: status) == "pending"
    assert _row(db, delivery.id).last_error == f"http_{status}"


def test_a_redirect_is_not_followed(db, private_app, private_settings, tenant, receivers, login):
    receiver = receivers(302)
    _register_local(private_app, login(tenant.admin_email), receiver.url())
    delivery = _emit(db, tenant)
    assert deliver(db, delivery.id, settings=private_settings) == "pending"
    assert receiver.paths() == ["/hook"]  # /target, where it pointed, was never asked for
    row = _row(db, delivery.id)
    assert (row.last_status_code, row.last_error) == (302, "redirect_302_not_followed")


def test_a_refused_connection_schedules_a_retry(db, private_app, private_settings, tenant, login):
    _register_local(private_app, login(tenant.admin_email), f"http://127.0.0.1:{_closed_port()}/hook")
    delivery = _emit(db, tenant)
    now = delivery.created_at + timedelta(seconds=2)
    assert deliver(db, delivery.id, settings=private_settings, now=now) == "pending"
    row = _row(db, delivery.id)
    assert (row.attempts, row.last_status_code, row.last_error) == (1, None, "connection_refused")
    assert now + timedelta(seconds=24) <= row.next_attempt_at <= now + timedelta(seconds=36)


def test_a_slow_receiver_times_out_and_is_retried(db, private_app, private_settings, tenant, receivers, login):
    receiver = receivers(200, delay=1.5)
    _register_local(private_app, login(tenant.admin_email), receiver.url())
    delivery = _emit(db, tenant)
    quick = dataclasses.replace(private_settings, webhook_timeout=0.3)
    started = time.monotonic()
    assert deliver(db, delivery.id, settings=quick) == "pending"
    assert time.monotonic() - started < 1.4
    assert _row(db, delivery.id).last_error == "timeout"


def test_after_three_days_of_failures_the_delivery_is_abandoned(db, settings, tenant):
    with db.transaction() as session:
        service.create_webhook(session, principal=_principal(tenant), url=PUBLIC_URL, events=[STATUS],
                               settings=settings)
    delivery = _emit(db, tenant)
    calls = []

    def unavailable(url, *, body, headers, timeout):
        calls.append(url)
        return 503

    assert deliver(db, delivery.id, settings=settings, http_post=unavailable,
                   now=delivery.created_at + timedelta(days=2)) == "pending"
    assert deliver(db, delivery.id, settings=settings, http_post=unavailable,
                   now=delivery.created_at + timedelta(days=3)) == "abandoned"
    row = _row(db, delivery.id)
    assert (row.state, row.attempts, row.next_attempt_at, row.last_error) == ("abandoned", 2, None, "http_503")
    assert deliver(db, delivery.id, settings=settings, http_post=unavailable) == "abandoned"
    assert len(calls) == 2


def test_the_rq_job_delivers_with_settings_from_the_environment(db, private_app, private_settings, tenant,
                                                               receivers, monkeypatch, login):
    from tests.fixtures.live import settings_environment

    receiver = receivers(200)
    _register_local(private_app, login(tenant.admin_email), receiver.url())
    delivery = _emit(db, tenant)
    for name, value in settings_environment(private_settings).items():
        monkeypatch.setenv(name, value)
    assert json.loads(json.dumps([delivery.id])) == [delivery.id]  # the job's only argument
    from gateway.runtime import install

    previous = install(None)  # the job builds this process's runtime from the environment, as a worker does
    try:
        assert deliver_job(delivery.id) == "delivered"
    finally:
        built = install(previous)
        if built is not None:
            built.close()
    assert len(receiver.requests) == 1


def test_timestamps_in_payloads_are_utc_with_z():
    assert service.timestamp(datetime(2026, 11, 23, 13, 16, tzinfo=dt.timezone(timedelta(hours=-5)))) == \
        "2026-11-23T18:16:00.000Z"

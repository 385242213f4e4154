"""The SMTP mailer's security (STARTTLS with a verified certificate, login, implicit TLS refusing a bad one) against
a real aiosmtpd server, the e-mail settings' checks, and the four kinds of message."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.mail import compose as compose_module
from gateway.mail import smtp
from gateway.mail.mailer import MailUnavailable, MemoryMailer
from gateway.mail.smtp import SmtpMailer
from gateway.settings import Settings, SettingsError
from infra.localstack.mail import MailCatcher
from tests.webhooks.test_webhooks import _certificate

NOW = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)


def message(event_type="request.status_changed", **context):
    return compose_module.compose(
        notification_id="n-1", event_type=event_type, request_id="r-1", to="paralegal@example.test",
        sender="Records <records@example.test>", portal_url="https://records.example.test/", now=NOW,
        context={"reference": "CLAIM-9", "facility": "Tufts Medical Center", **context})


@pytest.fixture
def tls_server(tmp_path):
    """aiosmtpd offering STARTTLS (a certificate for `localhost`) and requiring a login after it."""
    from aiosmtpd.smtp import AuthResult, LoginPassword

    cert, key = _certificate(tmp_path, "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"relay", b"s3cret")
        return AuthResult(success=ok)

    catcher = MailCatcher(tmp_path / "Maildir", tls_context=context, require_starttls=True,
                          authenticator=authenticator, auth_require_tls=True, server_hostname="localhost").start()
    yield catcher.port, cert, catcher
    catcher.stop()


def trusting(cafile: str):
    """ssl.create_default_context as the mailer calls it, trusting the test certificate too."""
    real = ssl.create_default_context

    def make(*args, **kwargs):
        context = real(*args, **kwargs)
        context.load_verify_locations(cafile)
        return context
    return make


def test_starttls_verifies_the_certificate_and_logs_in(tls_server, monkeypatch):
    port, cert, catcher = tls_server
    untrusted = SmtpMailer("localhost", port, security="starttls", user="relay", password="s3cret", timeout=5)
    with pytest.raises(MailUnavailable):  # a certificate nobody vouches for: nothing is sent in the clear
        untrusted.send(message())
    assert catcher.messages == []
    monkeypatch.setattr(smtp.ssl, "create_default_context", trusting(cert))
    with pytest.raises(MailUnavailable):  # a refused login is retried (the operator fixes it), never dropped
        SmtpMailer("localhost", port, security="starttls", user="relay", password="wrong", timeout=5).send(message())
    SmtpMailer("localhost", port, security="starttls", user="relay", password="s3cret", timeout=5).send(message())
    assert [c.rcpt_tos for c in catcher.messages] == [["paralegal@example.test"]]
    with pytest.raises(MailUnavailable):  # plain SMTP to a server that requires STARTTLS first
        SmtpMailer("localhost", port, security="none", timeout=5).send(message())


def test_implicit_tls_to_a_plain_server_fails_and_starttls_to_one_without_it_too(tmp_path):
    plain = MailCatcher(tmp_path / "Maildir").start()
    try:
        for security in ("ssl", "starttls"):
            with pytest.raises(MailUnavailable):
                SmtpMailer("127.0.0.1", plain.port, security=security, timeout=5).send(message())
        assert plain.messages == []
    finally:
        plain.stop()


def test_every_kind_of_message_names_the_request_and_nothing_else():
    texts = {
        "request.status_changed": message(status="fulfilled"),
        "request.message_posted": message("request.message_posted"),
        "request.stale_warning": message("request.stale_warning", status="returned", closes_on="2027-01-30"),
        "request.due_date_extended": message("request.due_date_extended", due_on="2027-02-14"),
    }
    subjects = {kind: m["Subject"] for kind, m in texts.items()}
    assert subjects == {"request.status_changed": "Request CLAIM-9 is fulfilled",
                        "request.message_posted": "Request CLAIM-9: a new message",
                        "request.stale_warning": "Request CLAIM-9 will be cancelled on January 30, 2027",
                        "request.due_date_extended": "Request CLAIM-9: due date extended to February 14, 2027"}
    for m in texts.values():
        body = m.get_content()
        assert "https://records.example.test/portal/requests/r-1" in body  # one slash, whatever the setting
        assert "https://records.example.test/portal/account" in body
        assert m["Message-ID"] == "<n-1@example.test>" and m["Auto-Submitted"] == "auto-generated"
    assert "correct and resubmit" in texts["request.stale_warning"].get_content()
    with pytest.raises(ValueError):
        message("request.document_added")
    mailer = MemoryMailer()
    mailer.send(texts["request.message_posted"])
    assert mailer.sent == [texts["request.message_posted"]]


def test_a_reference_with_accents_travels_quoted_printable():
    accented = message(reference="DOSSIER-Élodie-7")
    assert accented["Content-Transfer-Encoding"] == "quoted-printable"
    assert "DOSSIER-Élodie-7" in accented.get_content()


def _production(**overrides) -> dict:
    return {"env": "production", "secret_key": "s" * 40, "audit_chain_key": "a" * 40,
            "portal_url": "https://records.example.org", "data_dir": Path("/nonexistent"), **overrides}


@pytest.mark.parametrize("overrides, message_part", [
    ({"smtp_security": "tls"}, "GATEWAY_SMTP_SECURITY"),
    ({"smtp_host": "smtp.example.org"}, "cannot be none in production"),
    ({"portal_url": "http://records.example.org"}, "must be https in production"),
    ({"mail_from": "nobody"}, "GATEWAY_MAIL_FROM"),
    ({"portal_url": "records.example.org"}, "GATEWAY_PORTAL_URL"),
    ({"smtp_port": 0}, "GATEWAY_SMTP_PORT"),
    ({"stale_warning_days": 30}, "GATEWAY_STALE_WARNING_DAYS"),
    ({"stale_warning_days": 0}, "GATEWAY_STALE_WARNING_DAYS"),
])
def test_unsafe_or_broken_mail_settings_are_refused(overrides, message_part):
    with pytest.raises(SettingsError, match=message_part):
        Settings.from_env({}, **_production(**overrides))


def test_a_loopback_relay_needs_no_tls_and_the_password_never_shows():
    settings = Settings.from_env({"GATEWAY_SMTP_PASSWORD": "hunter2-hunter2", "GATEWAY_SMTP_USER": "relay",
                                  "GATEWAY_SMTP_SECURITY": "none", "GATEWAY_SMTP_PORT": "25"}, **_production())
    assert (settings.smtp_user, settings.smtp_port) == ("relay", 25)
    assert settings.redacted()["smtp_password"] == "***" and "hunter2" not in repr(settings)
    secure = Settings.from_env({}, **_production(smtp_host="smtp.example.org", smtp_security="starttls",
                                                 smtp_port=587))
    assert SmtpMailer.from_settings(secure) == SmtpMailer("smtp.example.org", 587, "starttls", None, "", 10.0)

"""`make run`'s mail catcher: a real SMTP server on loopback keeping every message in a Maildir."""

from __future__ import annotations

import mailbox
from datetime import UTC, datetime
from types import SimpleNamespace

from gateway.mail.compose import compose
from gateway.mail.smtp import SmtpMailer
from infra.localstack import run
from infra.localstack.mail import MailCatcher


def _message(to: str):
    return compose(notification_id="n-1", event_type="request.message_posted",
                   context={"reference": "CLAIM-7", "facility": "Lowell General Hospital"}, request_id="r-1", to=to,
                   sender="Records Request Gateway <records-gateway@localhost>", portal_url="http://localhost:8080",
                   now=datetime(2026, 11, 30, 15, 0, tzinfo=UTC))


def test_the_catcher_keeps_each_message_in_a_maildir_and_says_where(tmp_path):
    seen = []
    catcher = MailCatcher(tmp_path / "mail", on_message=lambda caught, path: seen.append(path)).start()
    try:
        SmtpMailer("127.0.0.1", catcher.port).send(_message("paralegal@example.test"))
    finally:
        catcher.stop()
    stored = list(mailbox.Maildir(tmp_path / "mail", create=False))
    assert len(stored) == 1 and stored[0]["Subject"] == "Request CLAIM-7: a new message"
    assert seen == [next((tmp_path / "mail" / "new").iterdir())]
    assert b"http://localhost:8080/portal/requests/r-1" in seen[0].read_bytes()


def test_make_run_starts_the_catcher_only_for_a_loopback_server_nobody_answers(tmp_path, capsys):
    stack = SimpleNamespace(services=[])
    elsewhere = SimpleNamespace(smtp_host="smtp.example.org", smtp_port=587)
    run.start_mail_catcher(elsewhere, tmp_path, stack)
    assert stack.services == [] and "smtp.example.org:587" in capsys.readouterr().out

    busy = MailCatcher(tmp_path / "other").start()
    try:
        run.start_mail_catcher(SimpleNamespace(smtp_host="127.0.0.1", smtp_port=busy.port), tmp_path, stack)
        assert stack.services == [] and "already answering" in capsys.readouterr().out
    finally:
        busy.stop()

    local = SimpleNamespace(smtp_host="127.0.0.1", smtp_port=busy.port)
    run.start_mail_catcher(local, tmp_path, stack)
    try:
        assert len(stack.services) == 1
        assert str(tmp_path / "mail") in capsys.readouterr().out
        SmtpMailer("127.0.0.1", busy.port).send(_message("x@example.test"))
        assert "mail to x@example.test: Request CLAIM-7: a new message" in capsys.readouterr().out
    finally:
        stack.services[0].stop()

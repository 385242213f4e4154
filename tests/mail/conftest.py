"""A real SMTP server (aiosmtpd, the catcher `make run` uses) on a free loopback port, and settings sending to it."""

from __future__ import annotations

import dataclasses

import pytest

from infra.localstack.mail import MailCatcher


@pytest.fixture(scope="module")
def smtp(tmp_path_factory):
    """The SMTP server; each test starts with an empty inbox and a server that accepts everything."""
    catcher = MailCatcher(tmp_path_factory.mktemp("mail") / "Maildir").start()
    yield catcher
    catcher.stop()


@pytest.fixture
def inbox(smtp):
    smtp.messages.clear()
    smtp.reply = smtp.refuse = smtp.refuse_only = None
    yield smtp
    if smtp._controller is None:  # a test stopped it: back for the next one
        smtp.start()


@pytest.fixture
def mail_settings(settings, smtp):
    """The session's settings, with e-mail going to the test SMTP server and links to a public portal address."""
    return dataclasses.replace(settings, smtp_host="127.0.0.1", smtp_port=smtp.port,
                               portal_url="https://records.example.test", mail_from="Records <records@example.test>")

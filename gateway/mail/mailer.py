"""The `Mailer` protocol, its errors, and an in-memory implementation for unit tests and development.

A mailer hands one finished message to a mail server.  It says whether a
failure is worth retrying (`MailUnavailable`: the server is down, slow, or
answered 4xx; our credentials or sender were refused, which an operator can
fix) or not (`MailRefused`: the server refused the recipient for good).  The
SMTP implementation lives in `gateway.mail.smtp`; `gateway.adapters` builds
it once from settings.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager
from email.message import EmailMessage
from typing import Protocol


class MailUnavailable(Exception):
    """The message was not accepted, but may be later: retry (a short reason code, never an address)."""


class MailRefused(Exception):
    """The server refused the message for good (an unknown recipient): do not retry."""


class ConnectionLost(MailUnavailable):
    """The mail server cannot be reached (refused, dropped, timed out): retry, and try no more messages now."""


class MailSession(Protocol):
    def send(self, message: EmailMessage) -> None:
        """Hand the message to the mail server; MailUnavailable or MailRefused when it is not accepted."""


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None:
        """Hand the message to the mail server; MailUnavailable or MailRefused when it is not accepted."""

    def session(self) -> AbstractContextManager[MailSession]:
        """Several messages over one connection; ConnectionLost when the server cannot be reached."""


class MemoryMailer:
    """Keeps messages in a list; `fail_with` makes the next sends raise (outages in unit tests)."""

    def __init__(self):
        self.sent: list[EmailMessage] = []
        self.fail_with: Exception | None = None

    def send(self, message: EmailMessage) -> None:
        """Record the message, or raise `fail_with`."""
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append(message)

    @contextmanager
    def session(self):
        """The mailer itself: a connection failure is `fail_with` set to a ConnectionLost."""
        if isinstance(self.fail_with, ConnectionLost):
            raise self.fail_with
        yield self

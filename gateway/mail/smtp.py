"""The SMTP mailer (smtplib): plain, STARTTLS or implicit TLS, optional login, timeouts; vendor errors translated.

A batch of notifications shares one connection (`session`): the connection,
the TLS handshake and the login are paid once per batch, not once per
message, and when the server cannot be reached the batch learns it once.  No
connection is kept between batches: it would only time out between them.
`send` is a session of one message.  Certificates are verified against the host
name (`ssl.create_default_context`).  What the server answered is reduced to a
short reason code (`smtp_451`, `timeout`, `ConnectionRefusedError`); server
replies can quote addresses, so they are never kept or logged.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage

from gateway.mail.mailer import ConnectionLost, MailRefused, MailUnavailable


@dataclass(frozen=True)
class SmtpMailer:
    """Sends through one SMTP server with the settings' security, login and timeout."""

    host: str
    port: int
    security: str = "none"  # none | starttls | ssl
    user: str | None = None
    password: str = field(default="", repr=False)
    timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings) -> SmtpMailer:
        """The SMTP server named in settings."""
        return cls(host=settings.smtp_host, port=settings.smtp_port, security=settings.smtp_security,
                   user=settings.smtp_user, password=settings.smtp_password, timeout=settings.smtp_timeout)

    def _connect(self) -> smtplib.SMTP:
        if self.security == "ssl":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                    context=ssl.create_default_context())
        client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        if self.security == "starttls":
            try:
                client.starttls(context=ssl.create_default_context())
            except BaseException:
                client.close()
                raise
        return client

    def send(self, message: EmailMessage) -> None:
        """Deliver one message; MailUnavailable (retry later) or MailRefused (never) when it is not accepted."""
        with self.session() as connection:
            connection.send(message)

    @contextmanager
    def session(self) -> Iterator[SmtpSession]:
        """One connection (and login) for several messages; ConnectionLost when the server cannot be reached."""
        with _translated():
            client = self._connect()
            try:
                if self.user:
                    client.login(self.user, self.password)
            except BaseException:
                client.close()
                raise
        try:
            yield SmtpSession(client)
        finally:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()


class SmtpSession:
    """Messages over one open connection; after ConnectionLost it sends nothing more."""

    def __init__(self, client: smtplib.SMTP):
        self._client, self._lost = client, None

    def send(self, message: EmailMessage) -> None:
        """Deliver one message over the connection; MailUnavailable, MailRefused or ConnectionLost."""
        if self._lost is not None:
            raise ConnectionLost(self._lost)
        try:
            with _translated():
                refused = self._client.send_message(message)
        except ConnectionLost as lost:
            self._lost = str(lost)
            raise
        if refused:  # some recipients refused, others accepted: we only ever send to one
            codes = sorted({code for code, _ in refused.values()})
            raise _by_code(codes[0])
        # smtplib resets the server's side itself after a refused sender, recipient or message, so the next
        # message starts clean either way.


@contextmanager
def _translated() -> Iterator[None]:
    """smtplib's and the socket's errors as the mailer's: MailRefused, MailUnavailable, ConnectionLost."""
    try:
        yield
    except smtplib.SMTPRecipientsRefused as error:
        codes = sorted({code for code, _ in error.recipients.values()})
        raise _by_code(codes[0] if codes else 550) from None
    except smtplib.SMTPServerDisconnected:
        raise ConnectionLost("SMTPServerDisconnected") from None
    except smtplib.SMTPResponseException as error:
        # A refused login or sender is the operator's to fix: retried, like a 4xx.
        if isinstance(error, smtplib.SMTPAuthenticationError | smtplib.SMTPSenderRefused):
            raise MailUnavailable(f"smtp_{error.smtp_code}") from None
        raise _by_code(error.smtp_code) from None
    except TimeoutError:
        raise ConnectionLost("timeout") from None
    except (smtplib.SMTPException, OSError, ssl.SSLError) as error:
        raise ConnectionLost(type(error).__name__) from None


def _by_code(code: int) -> Exception:
    return MailRefused(f"smtp_{code}") if 500 <= code < 600 else MailUnavailable(f"smtp_{code}")

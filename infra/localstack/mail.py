"""A local SMTP catcher (aiosmtpd): `make run` points the gateway's e-mail at it, and tests use it as a real server.

Every message it accepts is written to a Maildir (one file per message under
`new/`, readable with any mail reader: `mutt -f <dir>`, or just `cat`) and kept
in memory, parsed, for tests.  It relays nothing anywhere.  `reply` makes it
answer DATA with a given SMTP reply instead (e.g. "451 4.3.0 Try again later"),
and `refuse` refuses every recipient (e.g. "550 5.1.1 No such user"), for
tests of temporary and permanent failures.

aiosmtpd is a development and test dependency: only `infra/` and `tests/`
import it, never the gateway itself.
"""

from __future__ import annotations

import email
import email.policy
import mailbox
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from infra.localstack.ports import find_free_port


@dataclass
class Caught:
    """One accepted message: the envelope and the parsed message."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes


class _Handler:
    def __init__(self, catcher: MailCatcher):
        self.catcher = catcher

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.catcher.refuse and self.catcher.refuse_only in (None, address):
            return self.catcher.refuse
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.catcher.reply:
            return self.catcher.reply
        self.catcher.keep(envelope)
        return "250 Message accepted"


class MailCatcher:
    """An SMTP server on loopback that keeps what it is sent (in a Maildir, and in `messages`)."""

    def __init__(self, maildir: Path, *, host: str = "127.0.0.1", port: int | None = None, on_message=None,
                 **controller_options):
        # controller_options go to aiosmtpd's Controller (tests: tls_context, require_starttls, authenticator...).
        self.maildir_path, self.host, self.port = Path(maildir), host, port or find_free_port()
        self.controller_options = controller_options
        self.messages: list[Caught] = []
        self.reply: str | None = None
        self.refuse: str | None = None
        self.refuse_only: str | None = None  # refuse (with `refuse`) only this recipient
        self.on_message = on_message
        self._controller = None

    def start(self) -> MailCatcher:
        """Listen (a thread of this process)."""
        from aiosmtpd.controller import Controller

        self.maildir_path.parent.mkdir(parents=True, exist_ok=True)
        self._maildir = mailbox.Maildir(self.maildir_path, create=True)
        for sub in ("tmp", "new", "cur"):  # an existing, empty folder gets its Maildir layout too
            (self.maildir_path / sub).mkdir(exist_ok=True)
        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port, **self.controller_options)
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop listening (the port is closed: a client now gets connection refused)."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def keep(self, envelope) -> None:
        """Store one accepted message."""
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode()
        key = self._maildir.add(raw)
        caught = Caught(envelope.mail_from, list(envelope.rcpt_tos),
                        email.message_from_bytes(raw, policy=email.policy.default), raw)
        self.messages.append(caught)
        if self.on_message is not None:
            self.on_message(caught, self.maildir_path / "new" / key)

    def to(self, address: str) -> list[Caught]:
        """The messages sent to one address."""
        return [m for m in self.messages if address in m.rcpt_tos]

"""The one outbound sender of signed webhooks: requester organizations' webhooks and facility sinks alike.

`Sender.send` signs the body (`Gateway-Signature: t=<unix ts>,v1=<hex HMAC-SHA256
of "<t>.<raw body>">`, gateway.webhooks.signing), checks the target with the
SSRF guard under the operator's allow-private setting and POSTs once to the
address it checked (gateway.webhooks.ssrf.pinned_post: no proxy, no redirects,
the answer's body never read) within the timeout, and says what the answer
means: delivered, retry later, or give up.  Callers keep their own retry
machinery (the deliveries' backoff for requester webhooks, RQ's retries for
facility jobs); whether a failure is worth retrying is decided here only.

    2xx                                   delivered
    3xx (never followed)                  retry      redirect_<status>_not_followed
    408, 429, 5xx, any other status       retry      http_<status>
    other 4xx                             give up    http_<status>
    network error, timeout, TLS failure   retry      connection_refused | timeout | dns_error | tls_error | ...
    a target that resolves to a loopback,
      private or metadata address         retry      target_forbidden (DNS answers change; checked each time)
    a URL that can never be sent to
      (scheme, credentials, malformed)    give up    target_forbidden
"""

from __future__ import annotations

import functools
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from gateway.webhooks.signing import SIGNATURE_HEADER, sign
from gateway.webhooks.ssrf import WebhookUrlForbidden, pinned_post

USER_AGENT = "records-gateway-webhooks/1"
DELIVERED, RETRY, GIVE_UP = "delivered", "retry", "give_up"
# 408 and 429 say "later", not "never"; every other 4xx is the receiver refusing the event.
RETRYABLE_4XX = frozenset({408, 429})
# SSRF refusals about the URL itself rather than what its name resolves to today.
_PERMANENT_URL_REASONS = frozenset({"malformed", "scheme", "userinfo"})

Transport = Callable[..., int]  # (url, *, body: bytes, headers: dict, timeout: float) -> status code


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to: `verdict` (delivered | retry | give_up), the status, a short reason code."""

    verdict: str
    status: int | None = None
    reason: str | None = None  # never a message that could echo data: a code for logs and delivery records

    @property
    def delivered(self) -> bool:
        """The receiver took it (2xx)."""
        return self.verdict == DELIVERED

    @property
    def retryable(self) -> bool:
        """Worth another attempt later."""
        return self.verdict == RETRY


def classify_status(status: int) -> Outcome:
    """The meaning of an HTTP answer."""
    if 200 <= status < 300:
        return Outcome(DELIVERED, status)
    if 300 <= status < 400:  # the body would go somewhere nobody vetted: never followed, tried again later
        return Outcome(RETRY, status, f"redirect_{status}_not_followed")
    if 400 <= status < 500 and status not in RETRYABLE_4XX:
        return Outcome(GIVE_UP, status, f"http_{status}")
    return Outcome(RETRY, status, f"http_{status}")


def error_reason(error: BaseException) -> str:
    """A short class of a network failure (never a message that could echo data)."""
    chain, seen = error, set()
    while chain is not None and id(chain) not in seen:
        seen.add(id(chain))
        if isinstance(chain, WebhookUrlForbidden):
            return "target_forbidden"
        if isinstance(chain, TimeoutError | socket.timeout) or "Timeout" in type(chain).__name__:
            return "timeout"
        if isinstance(chain, ConnectionRefusedError):
            return "connection_refused"
        if isinstance(chain, socket.gaierror):
            return "dns_error"
        if isinstance(chain, ssl.SSLError) or type(chain).__name__ == "SSLError":
            return "tls_error"
        chain = chain.__cause__ or chain.__context__
    return type(error).__name__[:200]


def classify_error(error: BaseException) -> Outcome:
    """The meaning of an attempt that got no HTTP answer."""
    if isinstance(error, WebhookUrlForbidden) and error.reason in _PERMANENT_URL_REASONS:
        return Outcome(GIVE_UP, None, "target_forbidden")
    return Outcome(RETRY, None, error_reason(error))


@dataclass(frozen=True)
class Sender:
    """Signs, guards, pins, times out and classifies one POST; built once from the settings."""

    allow_private: bool = False
    timeout: float = 10.0
    user_agent: str = USER_AGENT
    ca_certs: str | None = None
    # The pinned, guarded POST by default; tests put a fake in its place.
    transport: Transport | None = None

    @classmethod
    def from_settings(cls, settings, **overrides) -> Sender:
        """The operator's allow-private setting and webhook timeout."""
        return cls(allow_private=settings.webhook_allow_private, timeout=settings.webhook_timeout, **overrides)

    def send(self, url: str, *, secret: str, body: bytes, timestamp: int,
             headers: dict[str, str] | None = None) -> Outcome:
        """POST `body` signed with `secret` at `timestamp` (unix seconds) to `url`, once; never raises for the
        receiver's or the network's sake."""
        signed = {"Content-Type": "application/json", "User-Agent": self.user_agent, **(headers or {}),
                  SIGNATURE_HEADER: sign(secret, body, int(timestamp))}
        post = self.transport or functools.partial(pinned_post, allow_private=self.allow_private,
                                                   ca_certs=self.ca_certs)
        try:
            status = int(post(url, body=body, headers=signed, timeout=self.timeout))
        except Exception as error:  # any failure to get a status is a failed attempt
            return classify_error(error)
        return classify_status(status)

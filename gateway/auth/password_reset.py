"""Password reset by e-mail: a single-use token valid 30 minutes, only its hash stored, mailed by a job.

No account enumeration: asking for a reset answers 202 with the same body
whatever the address, and does the same kind of work either way (one user
lookup and one audit entry in one short transaction); the e-mail itself is
sent later by an RQ job (housekeeping claims due rows, as it does notification
e-mails), so the SMTP round trip never shows in the answer's timing.  A known,
active account gets at most `PER_ACCOUNT_LIMIT` e-mails per `PER_ACCOUNT_WINDOW`
(more asks are answered alike and send nothing); requests per address are
limited by the rate limiter (gateway.auth.ratelimit, `password_reset_rate_limit`).

The token is never stored, queued or logged.  It is an HMAC, under a key
derived from the gateway secret key, of the row's random id: the sending job
recomputes it from the id, and the row keeps only the token's SHA-256 for the
lookup when it comes back.  Using it sets the password, bumps the user's
credentials epoch (every token and portal session ends, gateway.auth.accounts),
clears the account's lockout and spends every outstanding reset of the user.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from gateway.audit.service import record
from gateway.auth.accounts import set_password_and_end_credentials
from gateway.auth.models import PasswordReset, User
from gateway.auth.passwords import WeakPassword, hash_password
from gateway.auth.service import find_user_by_email
from gateway.db import Database, lease_due, new_id, utcnow
from gateway.errors import BadRequest, FieldError, Unprocessable
from gateway.mail.mailer import Mailer, MailRefused, MailUnavailable

log = logging.getLogger("gateway.auth.password_reset")

TOKEN_LIFETIME = timedelta(minutes=30)
PER_ACCOUNT_LIMIT = 3
PER_ACCOUNT_WINDOW = timedelta(hours=1)
# Mail attempts: a minute apart, doubling; a reset e-mail older than its token is not worth sending.
FIRST_RETRY = timedelta(minutes=1)
PAGE = "/portal/reset-password"


class ResetTokenInvalid(BadRequest):
    """Unknown, used, expired or belonging to a deactivated account: one answer for all."""

    code, title = "RESET_TOKEN_INVALID", "Reset link invalid or expired"


def _key(secret_key: str) -> bytes:
    return hashlib.sha256(b"records-gateway:password-reset:" + secret_key.encode()).digest()


def token_for(secret_key: str, reset_id: str) -> str:
    """The token of one reset row (43 URL-safe characters); recomputed by the job, never stored."""
    digest = hmac.new(_key(secret_key), reset_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def reference(reset_id: str) -> str:
    """How logs and mail headers name a reset: never its row id, from which (with the secret key) the token
    is derived."""
    return _hash(reset_id)[:16]


def request_reset(db: Database, *, email: str, secret_key: str, audit_ctx: dict) -> None:
    """Queue a reset e-mail if `email` is an active account under its limit; otherwise do nothing visible."""
    now = utcnow()
    with db.transaction() as session:
        user = find_user_by_email(session, email or "")
        queued = False
        if user is not None and user.active:
            recent = session.scalar(select(func.count()).select_from(PasswordReset).where(
                PasswordReset.user_id == user.id, PasswordReset.created_at > now - PER_ACCOUNT_WINDOW))
            if recent < PER_ACCOUNT_LIMIT:
                reset_id = new_id()
                session.add(PasswordReset(id=reset_id, user_id=user.id,
                                          token_hash=_hash(token_for(secret_key, reset_id)), created_at=now,
                                          expires_at=now + TOKEN_LIFETIME, mail_state="pending", attempts=0,
                                          next_attempt_at=now))
                queued = True
        # Audited either way; an unknown address is not written down (it may be someone's typo of a name).
        record(session, actor=f"user:{user.id}" if user else "anonymous", org_id=user.org_id if user else None,
               action="user.password_reset_request", result="success" if queued else "blocked",
               object_type="user", object_id=user.id if user else None, **audit_ctx)


def confirm_reset(db: Database, *, token: str, password: str, audit_ctx: dict) -> str:
    """Set a new password with a valid token; returns the user id.  ResetTokenInvalid or 422 PASSWORD_WEAK."""
    try:
        password_hash = hash_password(password)
    except WeakPassword as weak:
        # Checked first: a weak password does not spend the token.
        raise Unprocessable(str(weak), code="PASSWORD_WEAK",
                            errors=[FieldError("PASSWORD_WEAK", "password", str(weak))]) from None
    now = utcnow()
    with db.write_transaction() as session:
        reset = session.scalars(select(PasswordReset).where(PasswordReset.token_hash == _hash(token or ""))
                                .with_for_update()).one_or_none()
        user = session.get(User, reset.user_id) if reset is not None else None
        # The stored hash was found by equality on a hash of the presented token; compare again in constant time.
        if (reset is None or user is None or not user.active or reset.used_at is not None
                or now >= reset.expires_at or not hmac.compare_digest(reset.token_hash, _hash(token or ""))):
            raise ResetTokenInvalid("This reset link is invalid, used or expired. Ask for a new one.")
        session.execute(update(PasswordReset).where(PasswordReset.user_id == user.id,
                                                    PasswordReset.used_at.is_(None)).values(used_at=now))
        set_password_and_end_credentials(session, user, password_hash)
        record(session, actor=f"user:{user.id}", org_id=user.org_id, action="user.password_reset",
               object_type="user", object_id=user.id, **audit_ctx)
        return user.id


# -- the e-mail --------------------------------------------------------------------------------------------------

def compose(*, reset_id: str, token: str, to: str, sender: str, portal_url: str, now: datetime) -> EmailMessage:
    """The reset e-mail: a link whose token is in the fragment (browsers never send it to any server)."""
    link = f"{portal_url.rstrip('/')}{PAGE}#token={token}"
    body = "\n\n".join([
        "Hello,",
        "Someone (we hope you) asked to reset the password of your Records Request Gateway account.",
        f"Choose a new password here within 30 minutes:\n{link}",
        "The link works once. If you did not ask for it, ignore this e-mail: your password stays as it is.",
    ])
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = "Reset your Records Request Gateway password"
    message["Date"] = format_datetime(now)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "records-gateway"
    message["Message-ID"] = f"<reset-{reference(reset_id)}@{domain}>"
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message.set_content(body + "\n", cte="7bit")
    return message


def claim_due(session: Session, *, now: datetime, limit: int, lease: timedelta) -> list[str]:
    """Ids of reset e-mails due by `now`, pushed to `now + lease` (commit before enqueueing, as gateway.mail)."""
    return lease_due(session, PasswordReset.__table__, "mail_state", now=now, limit=limit, lease=lease)


def send(db: Database, reset_id: str, *, mailer: Mailer, settings, now: datetime) -> str:
    """One attempt at a reset e-mail; returns its state afterwards (safe to run twice)."""
    with db.transaction() as session:
        reset = session.get(PasswordReset, reset_id)
        if reset is None:
            return "missing"
        if reset.mail_state != "pending":
            return reset.mail_state
        user = session.get(User, reset.user_id)
        if user is None or not user.active or reset.used_at is not None or now >= reset.expires_at:
            reset.mail_state, reset.next_attempt_at = "skipped", None
            return reset.mail_state
        message = compose(reset_id=reset.id, token=token_for(settings.secret_key, reset.id), to=user.email,
                          sender=settings.mail_from, portal_url=settings.portal_url, now=now)
    error, retryable = None, False
    try:
        mailer.send(message)
    except MailUnavailable as unavailable:
        error, retryable = str(unavailable) or "unavailable", True
    except MailRefused as refused:
        error = str(refused) or "refused"
    with db.transaction() as session:
        reset = session.get(PasswordReset, reset_id, with_for_update=True)
        if reset.mail_state != "pending":
            return reset.mail_state
        reset.attempts = (reset.attempts or 0) + 1
        if error is None:
            reset.mail_state, reset.sent_at, reset.next_attempt_at, reset.last_error = "sent", now, None, None
        else:
            reset.last_error = error[:120]
            next_at = now + FIRST_RETRY * 2 ** min(reset.attempts - 1, 5)
            if not retryable or next_at >= reset.expires_at:
                reset.mail_state, reset.next_attempt_at = ("failed" if not retryable else "abandoned"), None
            else:
                reset.next_attempt_at = next_at
        state = reset.mail_state
    # A reference and codes only: never the address, the token or the row id the token is derived from.
    log.info("password reset mail attempt", extra={"reset": reference(reset_id), "state": state, "error": error})
    return state


def send_job(reset_id: str) -> str:
    """The RQ job: one attempt at reset e-mail `reset_id`, on the worker's runtime."""
    from gateway.runtime import runtime

    rt = runtime()
    return send(rt.db, reset_id, mailer=rt.mailer, settings=rt.settings, now=rt.clock.now())

"""Two-step sign-in in the portal: setting up an authenticator app, the code page of sign-in, turning it off.

The same service functions as the API (gateway.auth.mfa, gateway.auth.login).
Between the password and the code, the browser holds no session: only a signed
cookie naming the user, valid five minutes (`CHALLENGE_SECONDS`), which proves
nothing but that the password was right; the code page checks the code under
the same lockouts as the password, then starts the session.  Nothing secret
ever goes in a URL.

When settings require a second factor for the user's role and they have none
yet, every page but this one's and signing out sends them here.
"""

from __future__ import annotations

from flask import g, redirect, request, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer
from markupsafe import Markup

from gateway.auth import cookies, login, mfa
from gateway.auth.mfa_views import EnrolmentRequired
from gateway.auth.web import audit_context
from gateway.portal import bp
from gateway.portal.web import PUBLIC_ENDPOINTS, is_xhr, new_form_token, page, safe_next, start_session
from gateway.web import adapters, clock, settings

CHALLENGE_SECONDS = 300
_CHALLENGE_SALT = "portal-mfa-challenge"
# What a person who must enrol may still reach.
ENROLMENT_ENDPOINTS = frozenset({"portal.account", "portal.mfa_settings", "portal.mfa_setup", "portal.mfa_confirm",
                                 "portal.sign_out", "portal.session_status", "portal.keepalive"}) | PUBLIC_ENDPOINTS


def _challenge_cookie() -> str:
    return "__Host-rgw_mfa" if settings().portal_cookie_secure else "rgw_mfa"


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings().secret_key, salt=_CHALLENGE_SALT)


def _challenged_user() -> str | None:
    """The user whose password was right within the last five minutes in this browser, if any."""
    token = request.cookies.get(_challenge_cookie())
    if not token:
        return None
    try:
        payload = _serializer().loads(token, max_age=CHALLENGE_SECONDS)
    except BadSignature:  # also SignatureExpired
        return None
    return payload.get("u") if isinstance(payload, dict) else None


def ask_for_code(user_id: str, next_path: str | None):
    """After a right password on an account with a second factor: on to the code page (no session yet)."""
    response = redirect(url_for("portal.sign_in_code", next=next_path or None), code=303)
    cookies.set_cookie(response, _challenge_cookie(), _serializer().dumps({"u": user_id}),
                       max_age=CHALLENGE_SECONDS)
    return response


def _code_page(*, recovery: bool, error: str | None = None, status: int = 200):
    token = new_form_token()
    response = page("portal/sign_in_code.html", status, form_token=token, error=error, recovery=recovery,
                    next=safe_next(request.values.get("next")))
    cookies.set_cookie(response, cookies.form_cookie_name(), token, max_age=3600)
    return response


@bp.route("/sign-in/code", methods=["GET"])
def sign_in_code():
    """The second step of sign-in: the code from the authenticator app (or a recovery code)."""
    if _challenged_user() is None:
        return redirect(url_for("portal.sign_in", reason="code_expired"), code=303)
    return _code_page(recovery=request.args.get("recovery") == "1")


@bp.route("/sign-in/code", methods=["POST"], endpoint="sign_in_code_submit")
def sign_in_code_submit():
    """Check the code under the sign-in lockouts, then start the session."""
    user_id = _challenged_user()
    if user_id is None:
        return redirect(url_for("portal.sign_in", reason="code_expired"), code=303)
    recovery = request.form.get("recovery") == "1"
    code = (request.form.get("code") or "").strip()[:64]
    if not code:
        return _code_page(recovery=recovery, error="Enter the code.", status=422)
    s, ctx = settings(), audit_context()
    try:
        claims = login.check_second_factor(adapters().db, user_id=user_id, otp=code, ip=ctx["ip"],
                                           request_id=ctx["request_id"], secret_key=s.secret_key,
                                           policy=login.ThrottlePolicy(s.login_max_failures, s.login_lockout_seconds))
    except login.LoginLocked as locked:
        minutes = max(1, (locked.retry_after + 59) // 60)
        return _code_page(recovery=recovery, error=f"Too many failed attempts. Try again in {minutes} minutes.",
                          status=429)
    except login.LoginFailed:
        what = "recovery code" if recovery else "code"
        return _code_page(recovery=recovery, status=401,
                          error=f"That {what} does not match, or was used before. Check it and try again.")
    response = start_session(claims, safe_next(request.form.get("next")))
    cookies.clear_cookie(response, _challenge_cookie())
    return response


# --- setting it up and turning it off (signed in) ---------------------------------------------------------------

def _audit() -> dict:
    return {"actor": g.principal.audit_actor, "org_id": g.principal.org_id, **audit_context()}


def _settings_page(status: int = 200, *, error: str | None = None):
    with adapters().db.transaction() as session:
        enabled = mfa.is_enabled(session, g.principal.id)
        left = mfa.recovery_codes_left(session, g.principal.id) if enabled else 0
    required = settings().requires_mfa and not mfa.REQUIRED_ROLES.isdisjoint(g.principal.roles)
    return page("portal/mfa_settings.html", status, enabled=enabled, required=required, codes_left=left,
                error=error, changed=request.args.get("changed"))


def qr_svg(uri: str) -> Markup:
    """The otpauth URI as an inline SVG QR code with an accessible name (no script, no image request)."""
    import segno

    svg = segno.make(uri, error="m").svg_inline(scale=5, dark="#000", light="#fff", title="QR code")
    # Safe to mark: segno's output is path data and our own title; the URI itself is never in it as text.
    return Markup(svg.replace("<svg ", '<svg role="img" aria-label="QR code for your authenticator app" '  # noqa: S704
                                       'focusable="false" ', 1))


def _setup_page(secret: str, uri: str, codes: list[str] | None, *, error: str | None = None, status: int = 200):
    return page("portal/mfa_setup.html", status, secret=secret, qr=qr_svg(uri), recovery_codes=codes, error=error)


@bp.route("/account/two-step", methods=["GET"])
def mfa_settings():
    """Whether two-step sign-in is on, and the way to set it up or turn it off."""
    return _settings_page()


@bp.route("/account/two-step/setup", methods=["POST"])
def mfa_setup():
    """A new secret with its QR code and recovery codes (shown once), waiting for its first code."""
    try:
        with adapters().db.transaction() as session:
            enrolment = mfa.begin_enrolment(session, user_id=g.principal.id, secret_key=settings().secret_key,
                                            audit=_audit())
    except mfa.AlreadyEnabled:
        return redirect(url_for("portal.mfa_settings"), code=303)
    return _setup_page(enrolment.secret, enrolment.otpauth_uri, enrolment.recovery_codes)


@bp.route("/account/two-step/confirm", methods=["POST"])
def mfa_confirm():
    """Turn two-step sign-in on with the app's first code."""
    code = (request.form.get("code") or "").strip()[:64]
    secret_key = settings().secret_key
    if code:
        try:
            with adapters().db.transaction() as session:
                confirmed = mfa.confirm_enrolment(session, user_id=g.principal.id, code=code, secret_key=secret_key,
                                                  now=clock().now(), audit=_audit())
        except mfa.NotPending:
            return redirect(url_for("portal.mfa_settings"), code=303)
        if confirmed:
            return redirect(url_for("portal.mfa_settings", changed="on"), code=303)
    with adapters().db.transaction() as session:
        pending = mfa.pending_secret(session, user_id=g.principal.id, secret_key=secret_key)
    error = ("That code does not match. Check that your phone's clock is right and enter the newest code."
             if code else "Enter the 6-digit code from your authenticator app.")
    if pending is None:  # nothing waits for a code (never started, or already on)
        return _settings_page(422, error=error) if not code else redirect(url_for("portal.mfa_settings"), code=303)
    return _setup_page(*pending, None, error=error, status=422)


@bp.route("/account/two-step/disable", methods=["POST"])
def mfa_disable():
    """Turn two-step sign-in off with a current code or a recovery code (counted toward the lockout)."""
    code = (request.form.get("code") or "").strip()[:64]
    if not code:
        return _settings_page(422, error="Enter a code from your authenticator app, or a recovery code.")
    with adapters().db.transaction() as session:
        if not mfa.is_enabled(session, g.principal.id):
            return redirect(url_for("portal.mfa_settings"), code=303)
    s, ctx = settings(), audit_context()
    try:
        login.check_second_factor(adapters().db, user_id=g.principal.id, otp=code, ip=ctx["ip"],
                                  request_id=ctx["request_id"], secret_key=s.secret_key, signing_in=False,
                                  policy=login.ThrottlePolicy(s.login_max_failures, s.login_lockout_seconds))
        with adapters().db.transaction() as session:
            mfa.disable(session, user_id=g.principal.id, audit=_audit())
    except login.LoginLocked:
        return _settings_page(429, error="Too many failed attempts. Try again later.")
    except login.LoginFailed:
        return _settings_page(422, error="That code does not match, or was used before.")
    except mfa.NotEnabled:
        pass
    return redirect(url_for("portal.mfa_settings", changed="off"), code=303)


@bp.before_request
def require_enrolment():
    """After the session guard: a person whose role needs a second factor sets one up before anything else."""
    principal = g.get("principal") if g.get("portal") is not None else None
    if principal is None or request.endpoint in ENROLMENT_ENDPOINTS or not settings().requires_mfa:
        return None
    if mfa.REQUIRED_ROLES.isdisjoint(principal.roles):
        return None
    with adapters().db.transaction() as session:
        if mfa.is_satisfied(session, principal.id):
            return None
    if is_xhr():
        raise EnrolmentRequired("Set up two-step sign-in first.")
    return redirect(url_for("portal.mfa_settings"), code=303)

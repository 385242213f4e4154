"""Signing in and out of the portal, and keeping a session alive while someone works."""

from __future__ import annotations

from flask import g, jsonify, redirect, request, url_for

from gateway.auth import cookies, login
from gateway.auth.web import audit_context
from gateway.portal import bp, sessions
from gateway.portal.mfa import ask_for_code
from gateway.portal.web import new_form_token, page, safe_next, start_session
from gateway.web import adapters, settings

SIGNED_OUT_MESSAGES = {
    "expired": "Your session reached its maximum length. Please sign in again.",
    "signed_out": "You have signed out.",
    "deactivated": "Your account is no longer active. Ask your organization's administrator.",
    "password_changed": "Your password was changed or reset. Please sign in with the new password.",
    "ended_by_user": "This session was ended from another of your sessions. Please sign in again.",
    "password_reset": "Your new password is set, and every earlier session was signed out. Sign in with it now.",
    "code_expired": "Signing in took too long. Please enter your email address and password again.",
}


def _sign_in_page(*, error: str | None = None, email: str = "", status: int = 200):
    token = new_form_token()
    reason = request.args.get("reason")
    message = SIGNED_OUT_MESSAGES.get(reason)
    if reason == "idle":
        minutes = max(1, settings().portal_idle_timeout // 60)
        message = (f"You were signed out after {minutes} minute{'s' if minutes != 1 else ''} without activity, "
                   "to protect patients' information.")
    response = page("portal/sign_in.html", status, form_token=token, error=error, email=email, message=message,
                    next=safe_next(request.args.get("next")), sso=settings().sso_enabled)
    cookies.set_cookie(response, cookies.form_cookie_name(), token, max_age=3600)
    return response


@bp.route("/sign-in", methods=["GET"])
def sign_in():
    """The sign-in page (and, by POST, signing in)."""
    return _sign_in_page()


@bp.route("/sign-in", methods=["POST"], endpoint="sign_in_submit")
def sign_in_submit():
    """Check the password under the same lockouts as the API, then start a portal session."""
    s, db = settings(), adapters().db
    email = (request.form.get("email") or "").strip()[:320]
    password = request.form.get("password") or ""
    if not email or not password:
        return _sign_in_page(error="Enter your email address and password.", email=email, status=422)
    ctx = audit_context()
    try:
        claims = login.check_password(db, email=email, password=password[:256], ip=ctx["ip"],
                                      request_id=ctx["request_id"],
                                      policy=login.ThrottlePolicy(s.login_max_failures, s.login_lockout_seconds))
    except login.LoginLocked as locked:
        minutes = max(1, (locked.retry_after + 59) // 60)
        return _sign_in_page(error=f"Too many failed attempts. Try again in {minutes} minutes.", email=email,
                             status=429)
    except login.MfaRequired as pending:  # the password was right; the code comes next (gateway.portal.mfa)
        return ask_for_code(pending.user_id, safe_next(request.form.get("next")))
    except login.LoginFailed:
        return _sign_in_page(error="That email address and password do not match an active account.",
                             email=email, status=401)
    return start_session(claims, safe_next(request.form.get("next")))


@bp.route("/signed-out")
def signed_out():
    """Where a page's idle timer goes: the session ends here if it is idle (another tab may have kept
    it alive, and then that browser carries on)."""
    token = cookies.session_cookie_value()
    live = False
    if token:
        with adapters().db.transaction() as session:
            live = sessions.resume(session, token, idle_timeout=settings().portal_idle_timeout,
                                   touch=False).session is not None
    if live:
        return redirect(url_for("portal.home"), code=303)
    response = redirect(url_for("portal.sign_in", reason=request.args.get("reason")), code=303)
    cookies.clear_cookie(response, cookies.session_cookie_name())
    return response


@bp.route("/sign-out", methods=["POST"])
def sign_out():
    """End this browser's session."""
    with adapters().db.transaction() as session:
        row = session.get(sessions.PortalSession, g.portal.id)
        sessions.end(session, row, reason="signed_out", audit_ctx=audit_context())
    response = redirect(url_for("portal.sign_in", reason="signed_out"), code=303)
    cookies.clear_cookie(response, cookies.session_cookie_name())
    return response


@bp.route("/session/status")
def session_status():
    """How many seconds the session has before it is idle (asking does not count as activity)."""
    return jsonify({"idle_remaining": g.portal.idle_remaining, "idle_timeout": g.portal.idle_timeout})


@bp.route("/session/keepalive", methods=["POST"])
def keepalive():
    """'Stay signed in': the guard has already touched the session; tell the page how long it has."""
    return jsonify({"idle_timeout": settings().portal_idle_timeout})


@bp.route("/")
def home():
    """Each kind of user starts on their own work."""
    principal = g.principal
    if principal.is_requester:
        return redirect(url_for("portal.request_list"), code=303)
    if principal.has_role("facility_staff"):
        return redirect(url_for("portal.queue"), code=303)
    if principal.has_role("auditor"):
        return redirect(url_for("portal.disclosures_page"), code=303)
    return page("portal/no_portal_role.html")

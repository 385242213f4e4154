"""Your password and your sessions, and the way back in when the password is forgotten.

The same services as the API (gateway.auth.accounts, gateway.auth.password_reset).
Changing your password here keeps this browser signed in (its session moves to
the new credentials epoch) and ends every other session and access token.  The
forgotten-password pages are public: their forms use the sign-in page's
double-submit cookie for CSRF, and the reset link's token arrives in the URL
fragment, read by the page's script (never in a URL the server sees).
"""

from __future__ import annotations

import secrets

from flask import g, redirect, request, url_for

from gateway.auth import accounts, cookies, login, password_reset
from gateway.auth.models import User
from gateway.auth.web import audit_context
from gateway.errors import BadRequest, FieldError, GatewayError, TooManyRequests, Unprocessable
from gateway.portal import bp
from gateway.portal.models import PortalSession
from gateway.portal.session_views import own_sessions
from gateway.portal.web import page
from gateway.web import adapters, db_session, settings

PASSWORD_HINT = "At least 12 characters. A few unrelated words make a long password that is easy to remember."


def _security_page(*, status: int = 200, errors=(), notice: str | None = None):
    user = db_session().get(User, g.principal.id)
    return page("portal/security.html", status, user=user, errors=list(errors), notice=notice,
                sessions=own_sessions(g.principal.id, current_id=g.portal.id), password_hint=PASSWORD_HINT)


@bp.route("/account/security", methods=["GET"])
def security():
    """Change your password; see and end your signed-in sessions."""
    notices = {"password": "Your password was changed. Your other sessions were signed out.",
               "ended": "The session was ended. That browser is signed out."}
    return _security_page(notice=notices.get(request.args.get("done", "")))


@bp.route("/account/password", methods=["POST"])
def change_password():
    """Change your own password (as POST /v1/me/password), keeping this session."""
    form = request.form
    current, new, again = form.get("current") or "", form.get("new") or "", form.get("again") or ""
    if not current:
        return _security_page(status=422, errors=[FieldError("FIELD_REQUIRED", "current",
                                                             "Current password: enter it.")])
    if new != again:
        return _security_page(status=422, errors=[FieldError("PASSWORDS_DIFFER", "again",
                                                             "Repeat the new password exactly.")])
    s, db = settings(), adapters().db
    try:
        epoch = accounts.change_password(db, principal=g.principal, current=current[:256], new=new[:257],
                                         policy=login.ThrottlePolicy(s.login_max_failures, s.login_lockout_seconds),
                                         audit_ctx=audit_context())
    except accounts.CurrentPasswordWrong:
        return _security_page(status=400, errors=[FieldError("PASSWORD_INCORRECT", "current",
                                                             "Current password: that is not your password.")])
    except Unprocessable as weak:
        return _security_page(status=422, errors=[FieldError(weak.code, "new", f"New password: {weak.detail}.")])
    except TooManyRequests as locked:
        minutes = max(1, (int(locked.headers.get("Retry-After", "60")) + 59) // 60)
        return _security_page(status=429, errors=[FieldError("LOGIN_LOCKED", None, "Too many wrong passwords. "
                                                             f"Try again in {minutes} minutes.")])
    with db.transaction() as session:
        # This browser stays signed in: its session follows the password to the new epoch; every other ends.
        session.get(PortalSession, g.portal.id).credentials_epoch = epoch
    return redirect(url_for("portal.security", done="password"), code=303)


@bp.route("/account/sessions/<session_id>/end", methods=["POST"])
def end_session(session_id):
    """End one of your sessions (as DELETE /v1/me/sessions/{id}); ending this one signs you out."""
    from gateway.portal.session_views import end_own_session

    end_own_session(session_id)
    if session_id == g.portal.id:
        response = redirect(url_for("portal.sign_in", reason="signed_out"), code=303)
        cookies.clear_cookie(response, cookies.session_cookie_name())
        return response
    return redirect(url_for("portal.security", done="ended"), code=303)


# --- forgotten password (public pages) -------------------------------------------------------------------------

def _public_page(template: str, status: int = 200, **context):
    token = secrets.token_urlsafe(32)
    response = page(template, status, form_token=token, password_hint=PASSWORD_HINT, **context)
    cookies.set_cookie(response, cookies.form_cookie_name(), token, max_age=3600)
    return response


@bp.route("/forgot-password", methods=["GET"])
def forgot_password():
    """Ask for a reset e-mail."""
    return _public_page("portal/forgot_password.html", email="", sent=False, error=None)


@bp.route("/forgot-password", methods=["POST"], endpoint="forgot_password_submit")
def forgot_password_submit():
    """The same answer whether or not the address has an account (as POST /v1/auth/password-reset)."""
    email = (request.form.get("email") or "").strip()[:320]
    if not email:
        return _public_page("portal/forgot_password.html", 422, email="", sent=False,
                            error="Enter the e-mail address you sign in with.")
    password_reset.request_reset(adapters().db, email=email, secret_key=settings().secret_key,
                                 audit_ctx=audit_context())
    return _public_page("portal/forgot_password.html", 200, email="", sent=True, error=None)


@bp.route("/reset-password", methods=["GET"])
def reset_password():
    """Choose a new password; the page's script takes the token from the link's fragment."""
    return _public_page("portal/reset_password.html", errors=[])


@bp.route("/reset-password", methods=["POST"], endpoint="reset_password_submit")
def reset_password_submit():
    """Set the new password with the token (as POST /v1/auth/password-reset/confirm), then sign in."""
    form = request.form
    token, new, again = (form.get("token") or "").strip()[:200], form.get("new") or "", form.get("again") or ""
    errors = []
    if not token:
        errors.append(FieldError("FIELD_REQUIRED", "token", "Reset code: open the link from the e-mail, or paste "
                                                             "the code after “token=” from it."))
    if new != again:
        errors.append(FieldError("PASSWORDS_DIFFER", "again", "Repeat the new password exactly."))
    if errors:
        return _public_page("portal/reset_password.html", 422, errors=errors)
    try:
        password_reset.confirm_reset(adapters().db, token=token, password=new[:257], audit_ctx=audit_context())
    except BadRequest:
        return _public_page("portal/reset_password.html", 400, errors=[FieldError(
            "RESET_TOKEN_INVALID", None, "This reset link is invalid, already used or expired (links work once, "
                                         "for 30 minutes). Ask for a new one.")], expired=True)
    except GatewayError as refused:
        return _public_page("portal/reset_password.html", refused.status, errors=[FieldError(
            refused.code, "new", f"New password: {refused.detail}.")])
    response = redirect(url_for("portal.sign_in", reason="password_reset"), code=303)
    # Any session this browser had belonged to the old password: it ended with it.
    cookies.clear_cookie(response, cookies.session_cookie_name())
    return response


"""The portal's guard and page plumbing: session cookie, CSRF, security headers, error pages.

Every portal route needs a live session except the few on PUBLIC_ENDPOINTS;
the guard runs before any portal view, so a page added later is closed by
default (a test walks the portal's URL map).  The API's bearer hook skips
`/portal` routes: the two kinds of credential never mix.

Signing in (gateway.portal.account) and its code step (gateway.portal.mfa) both
end in `start_session`, and their forms carry a `new_form_token`: both live here.
"""

from __future__ import annotations

import functools
import re
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import current_app, g, jsonify, redirect, render_template, request, url_for

from gateway import idempotency
from gateway.audit.service import record_now
from gateway.auth import accounts, cookies
from gateway.auth.web import audit_context, principal_for_user_id
from gateway.errors import Forbidden
from gateway.portal import bp, sessions
from gateway.web import adapters, settings

PUBLIC_ENDPOINTS = frozenset({"portal.static", "portal.sign_in", "portal.sign_in_submit", "portal.signed_out",
                              "portal.forgot_password", "portal.forgot_password_submit", "portal.reset_password",
                              "portal.reset_password_submit",
                              # The code step of two-step sign-in (gateway.portal.mfa): no session yet.
                              "portal.sign_in_code", "portal.sign_in_code_submit",
                              # Hospital sign-on (gateway.portal.sso): the flow that makes the session.
                              "portal.sso_start", "portal.sso_callback"})
# Asking how long the session has left is not activity: it must not keep an idle session alive.
UNTOUCHED_ENDPOINTS = frozenset({"portal.session_status"})
XHR_HEADER = "X-Requested-With"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
# Scripts, styles and fetches from our own origin only; nothing inline, no frames, no plugins.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
                           "object-src 'none'")


class CsrfRejected(Forbidden):
    code, title = "CSRF_REJECTED", "Form expired"


@dataclass(frozen=True)
class PortalSessionInfo:
    """What pages need to know about the signed-in browser."""

    id: str
    csrf_token: str
    idle_timeout: int
    idle_remaining: int


def page(template: str, status: int = 200, **context):
    """A rendered portal page as an HTML response."""
    from flask import make_response

    response = make_response(render_template(template, **context), status)
    response.mimetype = "text/html"
    return response


FORM_ID_FIELD = "form_id"
_FORM_ID = re.compile(r"^[0-9a-f]{32}$")


def once_per_form(repeat_endpoint: str | None = None):
    """Decorator: a create form sent twice (double click, reload of the answer) acts once.

    The form carries a random `form_id` (`macros.form_id()`); the first POST claims it through the
    same idempotency records as the API's Idempotency-Key.  A repeat goes where the first answer
    redirected, or, when the first answer was a page showing a secret once, to `repeat_endpoint`
    with `resent=1` (that page is never shown twice).  A refused form (4xx) frees the id, so the
    corrected form can be sent.
    """
    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            form_id = request.form.get(FORM_ID_FIELD, "")
            if not _FORM_ID.match(form_id):
                return view(*args, **kwargs)
            db, actor, key = adapters().db, g.principal.audit_actor, f"portal-form:{form_id}"
            print_ = idempotency.fingerprint(request.endpoint or "", request.path)
            first = idempotency.claim(db, principal=actor, key=key, print_=print_)
            if first is not None:
                target = first.location or url_for(repeat_endpoint or "portal.home", resent=1)
                return redirect(target, code=303)
            try:
                response = current_app.make_response(view(*args, **kwargs))
            except BaseException:
                idempotency.release(db, principal=actor, key=key)
                raise
            if response.status_code >= 400:
                idempotency.release(db, principal=actor, key=key)
                return response
            location = response.headers.get("Location") if response.status_code in (301, 302, 303) else None
            idempotency.complete(db, principal=actor, key=key, print_=print_,
                                 response=idempotency.StoredResponse(response.status_code, None, location))
            return response
        return wrapper
    return decorate


def is_xhr() -> bool:
    """Requests made by the portal's own scripts (answered with JSON, not pages)."""
    return request.headers.get(XHR_HEADER) == "portal"


def upload_answer(received, back: str):
    """The answer to a portal upload (`receive_upload`'s result): the first answer again for a repeated
    Idempotency-Key, JSON to the uploader's script, else back to the page's documents."""
    if not isinstance(received, tuple):
        return received
    _stored, body = received
    if is_xhr():
        return jsonify(body), 201
    return redirect(back + "#documents", code=303)


@bp.before_request
def guard():
    """before_request of the portal blueprint: a live session, a known user, and CSRF on every POST."""
    g.portal = None
    if request.endpoint in PUBLIC_ENDPOINTS:
        if request.method == "POST":
            _check_form_cookie()
        return None
    s, db = settings(), adapters().db
    with db.transaction() as session:
        resumed = sessions.resume(session, cookies.session_cookie_value(), idle_timeout=s.portal_idle_timeout,
                                  touch=request.endpoint not in UNTOUCHED_ENDPOINTS)
        live = resumed.session
        info = PortalSessionInfo(live.id, live.csrf_token, s.portal_idle_timeout, sessions.idle_remaining(
            live, idle_timeout=s.portal_idle_timeout)) if live else None
        user_id, epoch = (live.user_id, live.credentials_epoch or 0) if live else (None, 0)
    if info is None:
        return signed_out_response(resumed.ended_because)
    principal = principal_for_user_id(user_id, epoch=epoch)
    if principal is None:
        # Deactivated, or the password was reset or changed elsewhere, since sign-in: the session ends now.
        reason = accounts.refusal_reason(db, user_id)
        with db.transaction() as session:
            row = session.get(sessions.PortalSession, info.id)
            sessions.end(session, row, reason=reason, audit_ctx=audit_context())
        return signed_out_response(reason)
    g.principal, g.portal = principal, info
    if request.method not in ("GET", "HEAD"):
        _check_csrf(info)
    return None


def _check_csrf(info: PortalSessionInfo) -> None:
    presented = request.headers.get(CSRF_HEADER) or _form_field(CSRF_FIELD)
    if not _same_origin() or not presented or not secrets.compare_digest(info.csrf_token.encode(),
                                                                          presented.encode()):
        record_now(adapters().db, actor=g.principal.audit_actor, org_id=g.principal.org_id,
                   action="portal.csrf", result="denied", object_type="route",
                   object_id=request.url_rule.rule[:64], **audit_context())
        raise CsrfRejected("This form has expired or did not come from this site. Reload the page and try again.")


# Multipart forms read whole (their body is capped like any form's, gateway.app.LARGE_BODY_ENDPOINTS), so a
# plain form without script can carry its token as a field.
BOUNDED_MULTIPART_FORMS = frozenset({"portal.import_csv"})


def _form_field(name: str) -> str | None:
    # Multipart uploads carry the token in a header; reading .form would buffer the whole body.
    if request.mimetype == "application/x-www-form-urlencoded" or (
            request.mimetype == "multipart/form-data" and request.endpoint in BOUNDED_MULTIPART_FORMS):
        return request.form.get(name)
    return None


def _same_origin() -> bool:
    """Origin (or Referer) must be this site when the browser sends one."""
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    if not origin or origin == "null":
        return origin is None
    parts = urlsplit(origin)
    return f"{parts.scheme}://{parts.netloc}" == request.host_url.rstrip("/")


def new_form_token() -> str:
    """The random value a pre-sign-in form echoes back (double submit with the form cookie)."""
    return secrets.token_urlsafe(32)


def _check_form_cookie() -> None:
    """Sign-in has no session yet: its form echoes a random value also set as a cookie (double submit)."""
    cookie = request.cookies.get(cookies.form_cookie_name())
    presented = _form_field(CSRF_FIELD)
    if not _same_origin() or not cookie or not presented or not secrets.compare_digest(cookie.encode(),
                                                                                       presented.encode()):
        raise CsrfRejected("The sign-in form expired. Please try again.")


def start_session(claims: dict, destination: str | None):
    """A new portal session for a user who has just proved who they are; redirects to `destination`."""
    s, db, ctx = settings(), adapters().db, audit_context()
    with db.transaction() as session:
        # A session this browser already had ends: signing in always starts a new token (no fixation).
        previous = sessions.resume(session, cookies.session_cookie_value(), idle_timeout=s.portal_idle_timeout,
                                   touch=False).session
        if previous is not None:
            sessions.end(session, previous, reason="signed_out", audit_ctx=ctx)
        _row, token = sessions.start(session, user_id=claims["subject"], org_id=claims["org_id"],
                                     lifetime=s.portal_session_lifetime, audit_ctx=ctx,
                                     epoch=claims.get("epoch"),
                                     client=sessions.client_label(request.headers.get("User-Agent")))
    response = redirect(destination or url_for("portal.home"), code=303)
    cookies.set_cookie(response, cookies.session_cookie_name(), token, max_age=s.portal_session_lifetime)
    cookies.clear_cookie(response, cookies.form_cookie_name())
    return response


def signed_out_response(reason: str | None):
    """Where a request without a live session goes: JSON 401 for scripts, the sign-in page otherwise."""
    from gateway.errors import Unauthenticated

    if is_xhr():
        raise Unauthenticated("Your session has ended. Sign in again.")
    reason = reason if reason in ("idle", "expired", "deactivated", "signed_out", "password_changed",
                                  "ended_by_user") else None
    target = url_for("portal.sign_in", reason=reason, next=safe_next(request.full_path))
    response = redirect(target, code=303)
    cookies.clear_cookie(response, cookies.session_cookie_name())
    return response


def safe_next(path: str | None) -> str | None:
    """A post-sign-in destination only if it is one of our own GET pages (never another site)."""
    if not path or request.method != "GET":
        return None
    path = path.rstrip("?")
    if not path.startswith("/portal/") or path.startswith("//") or "\\" in path or path.startswith("/portal/static"):
        return None
    return path[:300]


@bp.after_request
def security_headers(response):
    """after_request of the portal blueprint."""
    # A response may set its own policy (the document viewer's); every page gets the strict default.
    response.headers["Content-Security-Policy"] = g.get("portal_csp") or CONTENT_SECURITY_POLICY
    # same-origin, not no-referrer: under no-referrer browsers send `Origin: null` on our own form
    # posts, and the CSRF check needs the real origin; other sites still get no referrer.
    response.headers["Referrer-Policy"] = "same-origin"
    # Only the document viewer may be framed, and only by our own pages (its CSP says so too).
    response.headers["X-Frame-Options"] = g.get("portal_frame_options") or "DENY"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    response.headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(), payment=()"
    if settings().portal_cookie_secure:
        response.headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    if request.endpoint != "portal.static":
        response.headers["Cache-Control"] = "no-store"
    return response


def error_page(problem_response):
    """Render a portal page for a problem response (registered as the app's `gateway.error_page`)."""
    path = request.path
    if not (path == "/portal" or path.startswith("/portal/")) or is_xhr():
        return None
    body = problem_response.get_json(silent=True) or {}
    status = problem_response.status_code
    page = render_template("portal/error.html", status=status, code=body.get("code"),
                           title=_ERROR_TITLES.get(status, body.get("title") or "Something went wrong"),
                           detail=_ERROR_DETAILS.get(status, body.get("detail")), errors=body.get("errors") or [],
                           request_id=body.get("request_id"))
    response = current_app.response_class(page, status=status, mimetype="text/html")
    for name in ("Retry-After", "X-Request-ID"):
        if name in problem_response.headers:
            response.headers[name] = problem_response.headers[name]
    return security_headers(response)


# A foreign request and a missing one read the same: the page must not confirm that it exists.
_ERROR_TITLES = {404: "Page not found", 403: "Not allowed", 429: "Too many attempts", 503: "Temporarily unavailable",
                 500: "Something went wrong"}
_ERROR_DETAILS = {404: "This page does not exist, or you do not have access to it. Check the address, or go back "
                       "to your requests."}

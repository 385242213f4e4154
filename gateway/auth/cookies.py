"""The portal session cookie and its siblings: names and attributes (auth reads the session cookie to
key rate limits; the portal sets and clears them)."""

from __future__ import annotations

from flask import current_app, request

# `__Host-` binds a Secure cookie to this exact host and path / (no Domain): no subdomain can plant it.
SECURE_SESSION_COOKIE = "__Host-rgw_session"
PLAIN_SESSION_COOKIE = "rgw_session"
SECURE_FORM_COOKIE = "__Host-rgw_form"
PLAIN_FORM_COOKIE = "rgw_form"
# Hospital sign-on in progress (gateway/portal/sso.py): SameSite=Lax, because the provider sends the browser
# back to the callback from its own site, and a Strict cookie would not come along.
SECURE_SSO_COOKIE = "__Host-rgw_sso"
PLAIN_SSO_COOKIE = "rgw_sso"


def _secure() -> bool:
    return current_app.extensions["gateway"].settings.portal_cookie_secure


def session_cookie_name() -> str:
    """The session cookie's name under the current settings."""
    return SECURE_SESSION_COOKIE if _secure() else PLAIN_SESSION_COOKIE


def form_cookie_name() -> str:
    """The pre-sign-in CSRF cookie's name (double submit on the sign-in form)."""
    return SECURE_FORM_COOKIE if _secure() else PLAIN_FORM_COOKIE


def sso_cookie_name() -> str:
    """The cookie binding a hospital sign-on in progress to this browser."""
    return SECURE_SSO_COOKIE if _secure() else PLAIN_SSO_COOKIE


def session_cookie_value() -> str | None:
    """The session token the browser sent, if any."""
    return request.cookies.get(session_cookie_name()) or None


def set_cookie(response, name: str, value: str, *, max_age: int | None, samesite: str = "Strict") -> None:
    """Set a portal cookie: HttpOnly, SameSite=Strict (unless said), Secure unless the settings allow plain HTTP."""
    response.set_cookie(name, value, max_age=max_age, path="/", secure=_secure(), httponly=True,
                        samesite=samesite)


def clear_cookie(response, name: str, *, samesite: str = "Strict") -> None:
    """Remove a portal cookie."""
    response.delete_cookie(name, path="/", secure=_secure(), httponly=True, samesite=samesite)

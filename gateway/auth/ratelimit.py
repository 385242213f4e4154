"""Per-principal API rate limits (Flask-Limiter on Redis, so limits hold across gunicorn workers).

While Redis is down the limiter falls back to per-process memory instead of
failing requests: an outage of the limiter's store must not stop intake.
Sign-in gets its own tighter per-address limit on top of the database lockout.
"""

from __future__ import annotations

from flask import Flask, g, request
from flask_limiter import Limiter

from gateway.settings import Settings

UNLIMITED_RULES = frozenset({"/healthz", "/readyz", "/metrics"})


def rate_limit_key() -> str:
    """Authenticated callers are limited per principal, everyone else per address."""
    principal = g.get("principal")
    if principal is not None:
        return principal.audit_actor
    # The portal's principal is known only after the limiter ran (its guard is the blueprint's);
    # a signed-in browser is limited per session, so one office behind one address is not one bucket.
    session_cookie = _portal_cookie()
    if session_cookie:
        import hashlib

        return "portal:" + hashlib.sha256(session_cookie.encode()).hexdigest()[:32]
    return f"ip:{request.remote_addr}"


def _portal_cookie() -> str | None:
    from gateway.auth.cookies import session_cookie_value

    return session_cookie_value()


def _exempt() -> bool:
    return request.url_rule is not None and request.url_rule.rule in UNLIMITED_RULES


def install_rate_limits(app: Flask, settings: Settings) -> Limiter:
    """Attach a limiter to `app`; call after the authentication hook so the principal is known."""
    limiter = Limiter(
        key_func=rate_limit_key, app=app, storage_uri=settings.redis_url,
        storage_options={"socket_connect_timeout": 1, "socket_timeout": 1},
        default_limits=[settings.api_rate_limit], default_limits_exempt_when=_exempt,
        headers_enabled=True, in_memory_fallback_enabled=True, swallow_errors=True,
        strategy="moving-window", key_prefix="gateway-rl",
    )
    # Every sign-in shares one per-address limit: both password sign-ins (the API's token and the portal's
    # session), hospital sign-on's two steps (each start keeps a flow in Redis for 10 minutes) and the FHIR
    # token endpoint (each assertion costs a signature check and a replay-cache entry).
    shared = limiter.shared_limit(settings.sign_in_rate_limit, scope="sign-in",
                                  key_func=lambda: f"ip:{request.remote_addr}")
    for endpoint in ("auth.issue_token", "portal.sign_in_submit", "portal.sso_start", "portal.sso_callback",
                     "fhir.issue_token"):
        sign_in = app.view_functions.get(endpoint)
        if sign_in is not None:
            app.view_functions[endpoint] = shared(sign_in)
    # Password resets (asking for the e-mail, and using its token), from the API and the portal, per address.
    resets = limiter.shared_limit(settings.password_reset_rate_limit, scope="password-reset",
                                  key_func=lambda: f"ip:{request.remote_addr}")
    for endpoint in ("accounts.request_password_reset", "accounts.confirm_password_reset",
                     "portal.forgot_password_submit", "portal.reset_password_submit"):
        view = app.view_functions.get(endpoint)
        if view is not None:
            app.view_functions[endpoint] = resets(view)
    app.extensions["gateway.limiter"] = limiter
    return limiter

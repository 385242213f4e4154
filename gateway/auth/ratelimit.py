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
    return principal.audit_actor if principal is not None else f"ip:{request.remote_addr}"


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
    sign_in = app.view_functions.get("auth.issue_token")
    if sign_in is not None:
        app.view_functions["auth.issue_token"] = limiter.limit(
            settings.sign_in_rate_limit, key_func=lambda: f"ip:{request.remote_addr}")(sign_in)
    app.extensions["gateway.limiter"] = limiter
    return limiter

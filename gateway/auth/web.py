"""Authentication of every request and the role/scope checks views declare.

Every route requires a credential unless its URL rule is on PUBLIC_RULES; a
route added later without thinking about auth is therefore closed, and the
test that walks the URL map keeps it so.  Both credential kinds arrive as
`Authorization: Bearer`; a credential in the query string is refused.  An
address over its limit of failed credentials is refused (429) before any
lookup or signature check, unless the credential authenticated recently
(gateway.auth.bearer_guard).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import current_app, g, request

from gateway.audit.service import AuditUnavailable, record, record_now
from gateway.auth.api_keys import authenticate_api_key_with_org, looks_like_api_key
from gateway.auth.bearer_guard import Aggregate, BearerGuard
from gateway.auth.models import Organization, User
from gateway.auth.principal import Principal, scopes_for_roles
from gateway.auth.tokens import InvalidToken, TokenService
from gateway.errors import Forbidden, TooManyRequests, Unauthenticated
from gateway.web import adapters

log = logging.getLogger("gateway.auth")

PUBLIC_RULES = frozenset({
    "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/", "/docs/assets/init.js",
    "/docs/assets/<name>",
    "/v1/facilities", "/v1/auth/token", "/.well-known/jwks.json",
    "/v1/auth/password-reset", "/v1/auth/password-reset/confirm",
    "/oauth/token", "/.well-known/smart-configuration",
})
# The portal's pages authenticate with its session cookie (gateway.portal.web), never a bearer
# credential; its own guard closes every portal route but sign-in, and a test walks them too.
SESSION_AUTHENTICATED_PREFIX = "/portal"
# /fhir/r4 has its own guard too (gateway.fhir.views): only SMART access tokens open it, and its errors
# are OperationOutcomes.  Its token endpoint and SMART configuration are public.
FHIR_PREFIX = "/fhir/r4"
# Query parameters that look like someone put a credential in a URL (where logs and proxies keep it).
_CREDENTIAL_PARAMS = frozenset({"access_token", "token", "api_key", "apikey", "key", "jwt", "auth",
                                "authorization", "bearer"})
# Aggregate audit entries are written in short transactions, so the audit lock is never held for long.
_AGGREGATES_PER_TRANSACTION = 50


@dataclass
class AuthServices:
    """What the hook needs, built once per app by `install`."""

    tokens: TokenService
    oidc: object | None
    guard: BearerGuard | None = None


def install(app, tokens: TokenService, oidc=None) -> None:
    """Attach the authentication hook; must run before the rate limiter's own hook."""
    app.extensions["gateway.auth"] = AuthServices(tokens=tokens, oidc=oidc)
    app.before_request(authenticate_request)


def install_guard(app, guard: BearerGuard) -> None:
    """Limit failed bearer credentials per address (built on the rate limiter's storage, so after it)."""
    app.extensions["gateway.auth"].guard = guard


def remember_credential(credential: str) -> None:
    """A credential the gateway has just handed out is known good at once, like one that authenticated."""
    guard = current_app.extensions["gateway.auth"].guard
    if guard is not None:
        guard.succeeded(credential)


def client_ip() -> str | None:
    """The caller's address (ProxyFix has already applied the trusted-proxy setting)."""
    return request.remote_addr


def audit_context() -> dict:
    """ip and request id for audit entries written on behalf of this request."""
    return {"ip": client_ip(), "request_id": g.get("request_id")}


def current_principal() -> Principal:
    """The authenticated caller of this request."""
    principal = g.get("principal")
    if principal is None:  # only reachable if a public route asks for a principal
        raise Unauthenticated()
    return principal


def _deny(reason: str, credential: str | None = None) -> Unauthenticated:
    # The reason goes to the logs, never to the caller: every 401 is identical.  A presented credential
    # counts toward the address's failure limit; past the first few per window, failures are only counted
    # and audited together.
    guard: BearerGuard | None = current_app.extensions["gateway.auth"].guard
    audit_this, due = (True, []) if guard is None else guard.failed(client_ip(), credential)
    if audit_this:
        try:
            record_now(adapters().db, actor="anonymous", action="auth.credential", result="denied",
                       object_type="route", object_id=(request.url_rule.rule[:64] if request.url_rule else None),
                       **audit_context())
        except AuditUnavailable:
            pass  # refusing access needs no audit to stay safe
    _write_aggregates(guard, due)
    log.info("credential rejected", extra={"reason": reason, "request_id": g.get("request_id")})
    return Unauthenticated()


def _write_aggregates(guard: BearerGuard | None, aggregates: list[Aggregate]) -> None:
    """One `auth.failed_bearer.aggregate` entry per address and window; counts go back to Redis on failure."""
    window = guard.policy.audit_window if guard else 0
    for start in range(0, len(aggregates), _AGGREGATES_PER_TRANSACTION):
        chunk = aggregates[start:start + _AGGREGATES_PER_TRANSACTION]
        try:
            with adapters().db.transaction() as session:
                for agg in chunk:
                    began = datetime.fromtimestamp(agg.window_start, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                    # The count and its window in object_id: ids and numbers only, never the credential.
                    record(session, actor="anonymous", action="auth.failed_bearer.aggregate", result="denied",
                           object_type="failed_bearer", object_id=f"count:{agg.count} window:{began}/{window}s",
                           ip=agg.address)
        except Exception as error:
            log.error("failed-bearer aggregate not audited; kept for the next attempt",
                      extra={"exception_type": type(error).__name__})
            guard.restore(aggregates[start:])
            return


def authenticate_request():
    """before_request: establish g.principal or answer 401 (429 for an address over its failure limit)."""
    g.principal = None
    if request.routing_exception is not None or request.method == "OPTIONS":
        return None  # 404/405 answer as such; there is nothing to protect
    if request.url_rule is not None and request.url_rule.rule in PUBLIC_RULES:
        return None
    if request.url_rule is not None and _session_authenticated(request.url_rule.rule):
        return None
    services: AuthServices = current_app.extensions["gateway.auth"]
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    credential = credential.strip() if scheme.lower() == "bearer" else ""
    if credential and services.guard is not None:
        # Before any lookup, hashing or signature check: one Redis round trip while under the limit.
        wait = services.guard.refusal(client_ip(), credential)
        if wait is not None:
            raise TooManyRequests("Too many failed credentials from this address; retry after the indicated "
                                  "delay.", retry_after=wait)
    if _CREDENTIAL_PARAMS & {name.lower() for name in request.args}:
        raise _deny("credential in query string")
    if not credential:
        raise _deny("missing bearer credential")
    principal = (_principal_from_api_key(credential) if looks_like_api_key(credential)
                 else _principal_from_token(services, credential))
    if principal is None:
        raise _deny("invalid credential", credential)
    if services.guard is not None:
        services.guard.succeeded(credential)
        _write_aggregates(services.guard, services.guard.due_aggregates())
    g.principal = principal
    return None


def _session_authenticated(rule: str) -> bool:
    return any(rule == prefix or rule.startswith(prefix + "/") for prefix in (SESSION_AUTHENTICATED_PREFIX,
                                                                              FHIR_PREFIX))


def principal_for_user_id(user_id: str, epoch: int | None = None) -> Principal | None:
    """The principal of an active user in an active organization (the portal's session owner); with `epoch`,
    only while the user's credentials epoch is still that one (gateway.auth.accounts)."""
    return _principal_for_user(lambda session: session.get(User, user_id), epoch=epoch)


def _principal_from_api_key(credential: str) -> Principal | None:
    with adapters().db.transaction() as session:
        found = authenticate_api_key_with_org(session, credential)
        if found is None:
            return None
        key, org = found
        if org is None or not org.active:
            return None
        return Principal(kind="api_key", id=key.id, org_id=org.id, org_kind=org.kind,
                         roles=frozenset({"requester"}), scopes=frozenset(key.scopes))


def _principal_from_token(services: AuthServices, credential: str) -> Principal | None:
    try:
        claims = services.tokens.verify(credential)
    except InvalidToken as own_error:
        if services.oidc is None:
            log.info("credential rejected", extra={"why": own_error.reason})
            return None
        try:
            return _principal_from_oidc(services.oidc.verify(credential))
        except InvalidToken:
            return None
    # The user is re-read so a deactivated account stops working at once, not at token expiry, and a token
    # issued before the user's last password reset or change (an older credentials epoch) is refused.
    epoch = claims.get("epoch", 0)
    return _principal_for_user(lambda session: session.get(User, claims["sub"]),
                               epoch=epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else -1)


def _principal_from_oidc(claims: dict) -> Principal | None:
    # The external IdP proves who the person is; what they may do is still ours to say.
    from sqlalchemy import select

    email = str(claims.get("email", "")).lower()
    if not email or claims.get("email_verified") is False:
        return None
    return _principal_for_user(lambda session: session.scalars(
        select(User).where(User.email == email)).one_or_none())


def _principal_for_user(load, epoch: int | None = None) -> Principal | None:
    with adapters().db.transaction() as session:
        user = load(session)
        if user is None or not user.active:
            return None
        if epoch is not None and epoch != (user.credentials_epoch or 0):
            return None
        org = session.get(Organization, user.org_id) if user.org_id else None
        if user.org_id and (org is None or not org.active):
            return None
        return Principal(kind="user", id=user.id, org_id=user.org_id, org_kind=org.kind if org else None,
                         roles=frozenset(user.roles), facilities=frozenset(user.facilities),
                         scopes=scopes_for_roles(user.roles))


def requires(*roles: str, scope: str | None = None):
    """Decorator: the caller must hold one of `roles` (and an API key `scope`); else 403, audited."""
    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            principal = current_principal()
            # Scopes narrow what an API key may do; a person's roles already say what they may do.
            scoped_out = scope and principal.kind == "api_key" and not principal.has_scope(scope)
            if not principal.has_role(*roles) or scoped_out:
                audit_denied(principal)
                raise Forbidden("Your role does not allow this operation.")
            try:
                return view(*args, **kwargs)
            except Forbidden:
                # A service's own rights check (gateway.auth.rights) refused: audited like the role check,
                # after the view's uncommitted work is dropped (its write lock would hold up the audit).
                session = g.get("_db_session")
                if session is not None:
                    session.rollback()
                audit_denied(principal)
                raise
        wrapper.required_roles = roles
        return wrapper
    return decorate


def audit_denied(principal: Principal) -> None:
    """Record a 403 on this route in its own transaction (best effort: the refusal stands without it)."""
    try:
        record_now(adapters().db, actor=principal.audit_actor, org_id=principal.org_id,
                   action="access.denied", result="denied", object_type="route",
                   object_id=request.url_rule.rule[:64] if request.url_rule else None, **audit_context())
    except AuditUnavailable:
        pass  # refusing needs no audit to stay safe; the 403 stands

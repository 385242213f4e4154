"""Hospital sign-on pages: start the provider's sign-in, take its answer, start a portal session.

`GET /portal/sso/start` (the sign-in page's link) creates the flow and sends the browser to the provider;
`GET /portal/sso/callback` is where the provider sends it back.  Start is a plain link, not a form: the
pages' CSP allows forms to post to this site only, and browsers hold a form's redirect to that too.  A
start triggered by another site is harmless: the flow it creates is bound to this browser's own cookie,
so an answer for someone else's flow is refused here (no login CSRF).

The flow's state travels in the URL (as OAuth requires) and in a short-lived HttpOnly cookie; its nonce
and PKCE verifier stay in the server-side flow store.  Every refusal is a page with a stable code and is
audited; the flow is used up by its first callback, whatever the outcome.
"""

from __future__ import annotations

import hmac

from flask import current_app, g, redirect, request, url_for

from gateway.audit.service import AuditUnavailable, record_now
from gateway.auth import cookies
from gateway.auth.hospital_sso import FLOW_SECONDS, FlowStore, HospitalSso, SsoRefused
from gateway.auth.sso_accounts import sign_on
from gateway.auth.web import audit_context
from gateway.errors import NotFound
from gateway.portal import bp, sessions
from gateway.portal.web import page
from gateway.web import adapters, clock, settings

# What the provider's `error` parameter means for the person (anything else: the generic message).
_PROVIDER_ERRORS = {
    "access_denied": "The sign-in was cancelled or refused at your hospital's sign-in page.",
    "login_required": "Your hospital's sign-in page needs you to sign in again.",
    "consent_required": "Your hospital's sign-in page needs your consent first.",
    "temporarily_unavailable": "Your hospital's sign-in service is busy. Try again in a few minutes.",
}
MAX_PARAM = 2048


def hospital_sso() -> HospitalSso:
    """The configured provider, or a 404 when hospital sign-on is off."""
    sso = current_app.extensions.get("gateway.sso")
    if sso is None:
        raise NotFound("Hospital sign-on is not configured.")
    return sso


def _store() -> FlowStore:
    return FlowStore(adapters().redis, settings().secret_key)


def _refused(refused: SsoRefused):
    """The refusal page (its code shown, for the help desk), audited unless it was already; the flow cookie
    goes either way."""
    if not refused.audited:
        try:
            record_now(adapters().db, actor="anonymous", action=f"auth.sso.{refused.reason}", result="denied",
                       object_type="user", object_id=refused.user_id, **audit_context())
        except AuditUnavailable:
            pass  # a refusal stays a refusal without its audit entry
    response = page("portal/sso_refused.html", refused.status, code=refused.code, message=str(refused),
                    error_status=refused.status, request_id=g.get("request_id"))
    cookies.clear_cookie(response, cookies.sso_cookie_name(), samesite="Lax")
    return response


@bp.route("/sso/start", methods=["GET"])
def sso_start():
    """Create the flow (state, nonce, PKCE verifier) and send the browser to the provider."""
    sso = hospital_sso()
    try:
        flow, url = sso.begin()
        _store().put(flow)
    except SsoRefused as refused:
        return _refused(refused)
    response = redirect(url, code=303)
    cookies.set_cookie(response, cookies.sso_cookie_name(), flow.state, max_age=FLOW_SECONDS, samesite="Lax")
    return response


@bp.route("/sso/callback", methods=["GET"])
def sso_callback():
    """Check the state (once), exchange the code, validate the ID token, find the user, start a session."""
    sso = hospital_sso()
    args = request.args
    state = args.get("state", "")[:MAX_PARAM]
    bound = request.cookies.get(cookies.sso_cookie_name(), "")
    if not state or not bound or not hmac.compare_digest(state.encode(), bound.encode()):
        return _refused(_bad_state())
    try:
        flow = _store().take(state)
    except SsoRefused as refused:
        return _refused(refused)
    if flow is None:  # expired, already used (a replayed callback), or never ours
        return _refused(_bad_state())
    # RFC 9207: a provider that says who it is must be ours (a mix-up with another provider otherwise).
    if "iss" in args and args.get("iss") != sso.issuer:
        return _refused(SsoRefused("SSO_ISSUER_MISMATCH", 400, "This answer did not come from your hospital's "
                                   "sign-in service. Please start again.", "issuer_mismatch"))
    if "error" in args:
        error = args.get("error", "")[:64]
        return _refused(SsoRefused("SSO_PROVIDER_ERROR", 401, _PROVIDER_ERRORS.get(
            error, "Your hospital's sign-in service did not sign you in. Please start again."),
            "provider_error"))
    code = args.get("code", "")
    if not code or len(code) > MAX_PARAM:
        return _refused(SsoRefused("SSO_PROVIDER_ERROR", 400, "Your hospital's sign-in service sent no "
                                   "sign-in code. Please start again.", "provider_error"))
    s, db, ctx = settings(), adapters().db, audit_context()
    try:
        claims = sso.finish(flow, code=code, now=int(clock().now().timestamp()))
        signed_on = sign_on(db, issuer=sso.issuer, claims=claims, facility_claim=s.sso_facility_claim,
                            mapping=s.sso_facilities, audit_ctx=ctx)
    except SsoRefused as refused:
        return _refused(refused)
    with db.transaction() as session:
        _row, token = sessions.start(session, user_id=signed_on.user_id, org_id=None,
                                     lifetime=s.portal_session_lifetime, audit_ctx=ctx)
    # A page, not a redirect: the browser arrived here from the provider's site, and on a redirect chain
    # that began on another site it would not send the new SameSite=Strict session cookie; this page's own
    # navigation (a zero-second refresh, or its link) is same-site and carries it.
    destination = url_for("portal.home")
    response = page("portal/sso_signed_in.html", destination=destination)
    response.headers["Refresh"] = f"0; url={destination}"
    cookies.set_cookie(response, cookies.session_cookie_name(), token, max_age=s.portal_session_lifetime)
    cookies.clear_cookie(response, cookies.sso_cookie_name(), samesite="Lax")
    return response


def _bad_state() -> SsoRefused:
    return SsoRefused("SSO_STATE_INVALID", 400, "This sign-in link has expired or was already used, or it was "
                      "started in another browser. Please start again.", "state_invalid")

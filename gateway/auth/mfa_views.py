"""The API of the second factor: enrol, confirm and turn off your own TOTP; and the enrol-only rule.

When settings require a second factor for a person's role and they have none
yet, their token (and their portal session, gateway/portal/mfa.py) may only
enrol: every other route answers 403 MFA_ENROLMENT_REQUIRED.
"""

from __future__ import annotations

import functools

from flask import g, request
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from gateway.auth import login, mfa
from gateway.auth.web import audit_context, audit_denied, current_principal
from gateway.errors import BadRequest, Conflict, Forbidden, GatewayError, TooManyRequests
from gateway.openapi import MFA_ENROLMENT_RULES
from gateway.web import adapters, clock, settings

blp = Blueprint("mfa", __name__, description="A second factor (TOTP, RFC 6238) for people who sign in.")

# What an enrol-only principal may still call: who am I, and enrolment itself (documented by gateway.openapi).
ENROLMENT_RULES = MFA_ENROLMENT_RULES
CODE = fields.String(required=True, load_only=True, validate=validate.Length(1, 32), metadata={
    "description": "The 6-digit code your authenticator app shows now", "example": "492039"})


class MfaRequiredError(GatewayError):
    """The password was right; the account has a second factor and no code came with it."""

    status, code, title = 401, "MFA_REQUIRED", "Second factor required"

    def __init__(self):
        super().__init__("This account uses two-step sign-in: send the code from your authenticator app as "
                         "`otp` (or one of your recovery codes).",
                         headers={"WWW-Authenticate": 'Bearer realm="records-gateway"'})


class EnrolmentRequired(Forbidden):
    code = "MFA_ENROLMENT_REQUIRED"


class TotpEnrolmentSchema(Schema):
    secret = fields.String(metadata={"description": "The shared secret (base32), for typing into the app by hand. "
                                                    "Shown once.", "example": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"})
    otpauth_uri = fields.String(metadata={"description": "`otpauth://totp/...` for a QR code. Shown once."})
    recovery_codes = fields.List(fields.String(metadata={"example": "k7m2p-q9rst"}), metadata={
        "description": "Ten single-use codes that stand in for the app's code (a lost phone). Shown once."})


class TotpConfirmSchema(Schema):
    code = CODE


class TotpDisableSchema(Schema):
    otp = fields.String(required=True, load_only=True, validate=validate.Length(1, 32), metadata={
        "description": "A current code from your authenticator app, or one of your recovery codes",
        "example": "492039"})


def people_only(view):
    """Decorator (before the body is read): an API key is refused with 403, audited."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        principal = current_principal()
        if principal.kind != "user":
            audit_denied(principal)
            raise Forbidden("A second factor belongs to a person; an API key has none.")
        return view(*args, **kwargs)
    return wrapper


def _audit(principal) -> dict:
    return {"actor": principal.audit_actor, "org_id": principal.org_id, **audit_context()}


def _refused(error: mfa.MfaError) -> GatewayError:
    return Conflict(str(error), code=error.code)


@blp.route("/v1/me/mfa/totp", methods=["POST"])
@people_only
@blp.response(200, TotpEnrolmentSchema)
@blp.alt_response(403, description="FORBIDDEN: an API key has no second factor")
@blp.alt_response(409, description="MFA_ALREADY_ENABLED: turn it off first (DELETE with a code)")
def enrol_totp():
    """Start setting up an authenticator app: the secret, its otpauth URI and ten recovery codes, shown once.

    The set-up waits for its first code (POST .../confirm); starting again before that replaces it.
    """
    principal = current_principal()
    try:
        with adapters().db.transaction() as session:
            enrolment = mfa.begin_enrolment(session, user_id=principal.id, secret_key=settings().secret_key,
                                            audit=_audit(principal))
    except mfa.MfaError as error:
        raise _refused(error) from None
    return {"secret": enrolment.secret, "otpauth_uri": enrolment.otpauth_uri,
            "recovery_codes": enrolment.recovery_codes}


@blp.route("/v1/me/mfa/totp/confirm", methods=["POST"])
@people_only
@blp.arguments(TotpConfirmSchema)
@blp.response(204)
@blp.alt_response(400, description="MFA_CODE_INVALID: the code does not match (audited)")
@blp.alt_response(403, description="FORBIDDEN: an API key has no second factor")
@blp.alt_response(409, description="MFA_NOT_PENDING: no set-up is waiting for its first code")
def confirm_totp(body):
    """Turn two-step sign-in on with the first code of the app just set up; sign-in then needs `otp`."""
    principal = current_principal()
    try:
        with adapters().db.transaction() as session:
            confirmed = mfa.confirm_enrolment(session, user_id=principal.id, code=body["code"],
                                              secret_key=settings().secret_key, now=clock().now(),
                                              audit=_audit(principal))
    except mfa.MfaError as error:
        raise _refused(error) from None
    if not confirmed:  # after the commit: the failed attempt stays in the audit trail
        raise BadRequest("That code does not match. Check the time on your phone and enter the newest code.",
                         code="MFA_CODE_INVALID")


@blp.route("/v1/me/mfa/totp", methods=["DELETE"])
@people_only
@blp.arguments(TotpDisableSchema)
@blp.response(204)
@blp.alt_response(400, description="MFA_CODE_INVALID: the code does not match or was used before; counted "
                                   "toward the sign-in lockout (audited)")
@blp.alt_response(403, description="FORBIDDEN: an API key has no second factor")
@blp.alt_response(409, description="MFA_NOT_ENABLED: two-step sign-in is not on")
@blp.alt_response(429, description="LOGIN_LOCKED: too many wrong passwords or codes; see Retry-After")
def disable_totp(body):
    """Turn two-step sign-in off, with a current code (or a recovery code); the recovery codes go too."""
    principal, s, ctx = current_principal(), settings(), audit_context()
    with adapters().db.transaction() as session:
        enabled = mfa.is_enabled(session, principal.id)
    if not enabled:
        raise Conflict("Two-step sign-in is not on.", code="MFA_NOT_ENABLED")
    try:
        login.check_second_factor(adapters().db, user_id=principal.id, otp=body["otp"], ip=ctx["ip"],
                                  request_id=ctx["request_id"], secret_key=s.secret_key, signing_in=False,
                                  policy=login.ThrottlePolicy(s.login_max_failures, s.login_lockout_seconds))
    except login.LoginLocked as locked:
        raise TooManyRequests("Too many failed sign-ins or codes; try again later.", retry_after=locked.retry_after,
                              code="LOGIN_LOCKED") from None
    except login.LoginFailed:
        raise BadRequest("That code does not match, or was used before.", code="MFA_CODE_INVALID") from None
    try:
        with adapters().db.transaction() as session:
            mfa.disable(session, user_id=principal.id, audit=_audit(principal))
    except mfa.MfaError as error:
        raise _refused(error) from None


def require_enrolment():
    """before_request (after authentication): an enrol-only person reaches only the enrolment routes."""
    principal = g.get("principal")
    if principal is None or principal.kind != "user" or not settings().requires_mfa:
        return None
    if mfa.REQUIRED_ROLES.isdisjoint(principal.roles) or request.url_rule is None:
        return None
    if (request.method, request.url_rule.rule) in ENROLMENT_RULES:
        return None
    with adapters().db.transaction() as session:
        if mfa.is_satisfied(session, principal.id):
            return None
    audit_denied(principal)
    raise EnrolmentRequired("Your role needs two-step sign-in: set it up first (POST /v1/me/mfa/totp, then "
                            ".../confirm); until then nothing else is open to you.")

"""Accounts over the API: deactivate, reactivate, roles and facilities, password change and reset."""

from __future__ import annotations

import functools

from flask import request
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from gateway.auth import accounts, login, password_reset
from gateway.auth.models import ROLES, User
from gateway.auth.passwords import MAX_LENGTH, MIN_LENGTH
from gateway.auth.tenancy import get_visible
from gateway.auth.views import UserSchema
from gateway.auth.web import audit_context, current_principal, requires
from gateway.errors import BadRequest, Forbidden
from gateway.schemas import PlainText, Timestamp
from gateway.web import adapters, db_session, settings

blp = Blueprint("accounts", __name__, description="Account lifecycle: deactivation, roles, passwords.")

PEOPLE = ("requester", "requester_admin", "facility_staff", "auditor", "gateway_admin")
RESET_ACCEPTED = ("If an active account uses this address, an e-mail with a link to choose a new password is on "
                  "its way. The link works once, for 30 minutes.")


class AccountSchema(UserSchema):
    facilities = fields.List(fields.String(), metadata={"description": "facility codes (facility_staff only)"})
    deactivated_at = Timestamp(allow_none=True)


class UserUpdateSchema(Schema):
    class Meta:
        unknown = "raise"

    roles = fields.List(fields.String(validate=validate.OneOf(ROLES)), validate=validate.Length(1, len(ROLES)),
                        metadata={"description": "the user's whole set of roles"})
    facilities = fields.List(fields.String(validate=validate.Length(1, 64)), validate=validate.Length(0, 50),
                             metadata={"description": "facility codes, for facility_staff only"})


class PasswordResetRequestSchema(Schema):
    email = PlainText(320, required=True)


class PasswordResetAcceptedSchema(Schema):
    detail = fields.String(metadata={"example": RESET_ACCEPTED})


class PasswordResetConfirmSchema(Schema):
    token = fields.String(required=True, load_only=True, validate=validate.Length(1, 200))
    password = fields.String(required=True, load_only=True, validate=validate.Length(MIN_LENGTH, MAX_LENGTH),
                             metadata={"description": "the new password (the policy: 12 to 256 characters)"})


class PasswordChangeSchema(Schema):
    current = fields.String(required=True, load_only=True, validate=validate.Length(1, MAX_LENGTH))
    new = fields.String(required=True, load_only=True, validate=validate.Length(MIN_LENGTH, MAX_LENGTH),
                        metadata={"description": "the new password (the policy: 12 to 256 characters)"})


def people_only(view):
    """Decorator under `@requires`: API keys are refused (403, audited by `requires`) before the body is read."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if current_principal().kind != "user":
            raise Forbidden("This belongs to people; an API key has no password or sessions.")
        return view(*args, **kwargs)
    return wrapper


def _visible_user(user_id: str) -> User:
    # The tenancy guard decides: another organization's user is a 404 (and the probe is audited).
    return get_visible(db_session(), current_principal(), User, user_id, db=adapters().db,
                       audit_context=audit_context())


def _fresh(user_id: str) -> User:
    session = db_session()
    session.expire_all()
    return session.get(User, user_id)


@blp.route("/v1/users/<user_id>/deactivate", methods=["POST"])
@requires("requester_admin", "gateway_admin")
@blp.response(200, AccountSchema)
@blp.alt_response(409, description="CANNOT_CHANGE_OWN_ACCOUNT: you cannot deactivate yourself; LAST_ADMIN: the "
                                   "organization's last active admin stays.")
def deactivate_user(user_id):
    """Deactivate a user: their tokens and portal sessions stop working at once and sign-in is refused."""
    user = _visible_user(user_id)
    accounts.deactivate(adapters().db, principal=current_principal(), user_id=user.id, audit_ctx=audit_context())
    return _fresh(user.id)


@blp.route("/v1/users/<user_id>/reactivate", methods=["POST"])
@requires("requester_admin", "gateway_admin")
@blp.response(200, AccountSchema)
@blp.alt_response(409, description="CANNOT_CHANGE_OWN_ACCOUNT: you cannot reactivate yourself.")
def reactivate_user(user_id):
    """Let a deactivated user sign in again (tokens and sessions they had stay ended)."""
    user = _visible_user(user_id)
    accounts.reactivate(adapters().db, principal=current_principal(), user_id=user.id, audit_ctx=audit_context())
    return _fresh(user.id)


@blp.route("/v1/users/<user_id>", methods=["PATCH"])
@requires("requester_admin", "gateway_admin")
@blp.arguments(UserUpdateSchema)
@blp.response(200, AccountSchema)
@blp.alt_response(409, description="CANNOT_CHANGE_OWN_ACCOUNT: you cannot change your own roles; LAST_ADMIN: the "
                                   "organization's last active admin keeps requester_admin.")
@blp.alt_response(422, description="ROLES_INVALID, FACILITY_REQUIRED, FACILITY_UNKNOWN, "
                                   "FACILITIES_NOT_APPLICABLE: see `errors`.")
def update_user(body, user_id):
    """Change a user's roles and/or facilities (the whole list of each); audited with before and after."""
    if not request.is_json:  # webargs reads a missing body as {}; a change needs one, even if empty
        raise BadRequest("Send a JSON object with `roles` and/or `facilities`.", code="BODY_NOT_JSON")
    user = _visible_user(user_id)
    accounts.update_roles(adapters().db, principal=current_principal(), user_id=user.id,
                          roles=body.get("roles"), facilities=body.get("facilities"), audit_ctx=audit_context())
    return _fresh(user.id)


@blp.route("/v1/me/password", methods=["POST"])
@requires(*PEOPLE)
@people_only
@blp.arguments(PasswordChangeSchema)
@blp.response(204)
@blp.alt_response(400, description="PASSWORD_INCORRECT: the current password is wrong (counted toward the "
                                   "account's sign-in lockout).")
@blp.alt_response(422, description="PASSWORD_WEAK: the new password does not meet the policy (12 to 256 "
                                   "characters).")
@blp.alt_response(429, description="LOGIN_LOCKED: too many wrong passwords; see Retry-After.")
def change_password(body):
    """Change your own password; every token and portal session of yours ends (this token too)."""
    s = settings()
    accounts.change_password(adapters().db, principal=current_principal(), current=body["current"],
                             new=body["new"], policy=login.ThrottlePolicy(s.login_max_failures,
                                                                          s.login_lockout_seconds),
                             audit_ctx=audit_context())


@blp.route("/v1/auth/password-reset", methods=["POST"])
@blp.arguments(PasswordResetRequestSchema)
@blp.response(202, PasswordResetAcceptedSchema)
def request_password_reset(body):
    """Ask for a password-reset e-mail: 202 with the same body whether or not the address has an account."""
    password_reset.request_reset(adapters().db, email=body["email"], secret_key=settings().secret_key,
                                 audit_ctx=audit_context())
    return {"detail": RESET_ACCEPTED}


@blp.route("/v1/auth/password-reset/confirm", methods=["POST"])
@blp.arguments(PasswordResetConfirmSchema)
@blp.response(204)
@blp.alt_response(400, description="RESET_TOKEN_INVALID: the token is unknown, used or expired.")
@blp.alt_response(422, description="PASSWORD_WEAK: the new password does not meet the policy (the token is "
                                   "not spent).")
def confirm_password_reset(body):
    """Choose a new password with the e-mailed token; every token and portal session of the user ends."""
    password_reset.confirm_reset(adapters().db, token=body["token"], password=body["password"],
                                 audit_ctx=audit_context())


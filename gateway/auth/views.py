"""Sign-in, the public keys, the caller's identity, and an organization's API keys and users."""

from __future__ import annotations

from flask import current_app, url_for
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from gateway.auth import login, org_admin, rights, service
from gateway.auth.models import ROLES, SCOPES, ApiKey, Organization, User
from gateway.auth.tenancy import get_visible, visible_select
from gateway.auth.web import audit_context, current_principal, remember_credential, requires
from gateway.errors import FieldError, NotFound, TooManyRequests, Unauthenticated, Unprocessable
from gateway.pagination import PageArgsSchema, keyset_page
from gateway.schemas import Flag, PlainText, Timestamp, WholeNumber
from gateway.web import adapters, db_session, settings

blp = Blueprint("auth", __name__, description="Authentication, API keys and organization users.")


class TokenRequestSchema(Schema):
    email = PlainText(320, required=True)
    password = fields.String(required=True, load_only=True, validate=validate.Length(1, 256))
    otp = fields.String(load_only=True, validate=validate.Length(1, 32), metadata={
        "description": "With two-step sign-in on: the code your authenticator app shows now, or one of your "
                       "recovery codes (each works once)."})


class TokenSchema(Schema):
    access_token = fields.String()
    token_type = fields.String(metadata={"example": "Bearer"})
    expires_in = fields.Integer(metadata={"example": 900})


class MeSchema(Schema):
    kind = fields.String(metadata={"description": "user or api_key"})
    id = fields.String()
    org = fields.String(attribute="org_id", allow_none=True)
    org_kind = fields.String(allow_none=True)
    roles = fields.List(fields.String())
    facilities = fields.List(fields.String())
    scopes = fields.List(fields.String())
    email_notifications = Flag(allow_none=True, metadata={
        "description": "Whether you receive e-mail about your organization's requests (people only; null for "
                       "an API key). Change it with PATCH /v1/me."})


class MeUpdateSchema(Schema):
    class Meta:
        unknown = "raise"

    email_notifications = Flag(metadata={
        "description": "E-mail about status changes and new messages on your organization's requests"})


class ApiKeyCreateSchema(Schema):
    name = PlainText(100, min_length=0, load_default="")
    scopes = fields.List(fields.String(validate=validate.OneOf(SCOPES)), required=True,
                         validate=validate.Length(min=1, max=len(SCOPES)))
    expires_in_days = WholeNumber(load_default=None, allow_none=True, validate=validate.Range(1, 730))


class ApiKeySchema(Schema):
    id = fields.String()
    org = fields.String(attribute="org_id")
    name = fields.String()
    prefix = fields.Function(lambda key: f"rgw_{key.public_id}_",
                             metadata={"description": "identifies the key; not secret"})
    scopes = fields.List(fields.String())
    created_at = Timestamp()
    expires_at = Timestamp(allow_none=True)
    revoked_at = Timestamp(allow_none=True)
    last_used_at = Timestamp(allow_none=True)


class ApiKeyCreatedSchema(ApiKeySchema):
    key = fields.String(metadata={"description": "The full key. Shown once; store it now."})


class ApiKeyListSchema(Schema):
    items = fields.List(fields.Nested(ApiKeySchema))
    next_cursor = fields.String(allow_none=True)


class UserCreateSchema(Schema):
    email = fields.String(required=True, validate=validate.Length(1, 320),
                          metadata={"pattern": service.EMAIL_PATTERN, "example": "clerk@example.com"})
    password = fields.String(required=True, load_only=True, validate=validate.Length(12, 256))
    role = fields.String(load_default="requester", validate=validate.OneOf(["requester", "requester_admin"]))


class UserSchema(Schema):
    id = fields.String()
    email = fields.String()
    org = fields.String(attribute="org_id", allow_none=True)
    roles = fields.List(fields.String(validate=validate.OneOf(ROLES)))
    active = fields.Boolean()
    created_at = Timestamp()
    last_login_at = Timestamp(allow_none=True)


class UserListSchema(Schema):
    items = fields.List(fields.Nested(UserSchema))
    next_cursor = fields.String(allow_none=True)


@blp.route("/v1/auth/token", methods=["POST"])
@blp.arguments(TokenRequestSchema)
@blp.response(200, TokenSchema)
@blp.alt_response(401, description="UNAUTHENTICATED: wrong email, password or code (counted toward the lockout); "
                                   "MFA_REQUIRED: the password was right but the account needs `otp`")
@blp.alt_response(429, description="Locked out after repeated failures; see Retry-After")
def issue_token(body):
    """Sign in with email and password; returns a short-lived access token."""
    s = settings()
    ctx = audit_context()
    try:
        issued = login.sign_in(
            adapters().db, current_app.extensions["gateway.auth"].tokens,
            email=body["email"], password=body["password"], ip=ctx["ip"], request_id=ctx["request_id"],
            policy=login.ThrottlePolicy(s.login_max_failures, s.login_lockout_seconds),
            otp=body.get("otp"), secret_key=s.secret_key)
    except login.MfaRequired:
        from gateway.auth.mfa_views import MfaRequiredError

        raise MfaRequiredError() from None
    except login.LoginLocked as locked:
        raise TooManyRequests("Too many failed sign-ins; try again later.", retry_after=locked.retry_after,
                              code="LOGIN_LOCKED") from None
    except login.LoginFailed:
        raise Unauthenticated() from None
    # The password was just proven: the new token works at once, even from an address over its failure limit.
    remember_credential(issued.access_token)
    return {"access_token": issued.access_token, "token_type": issued.token_type,
            "expires_in": issued.expires_in}


JWKS = {"type": "object", "required": ["keys"], "properties": {"keys": {"type": "array", "items": {
    "type": "object", "required": ["kty", "kid", "alg", "use"],
    "description": "A public JSON Web Key (RFC 7517): Ed25519 (`OKP`, `crv`, `x`) or RSA (`RSA`, `n`, `e`).",
    "properties": {name: {"type": "string"} for name in ("kty", "kid", "alg", "use", "crv", "x", "n", "e")}}}}}


@blp.route("/.well-known/jwks.json")
@blp.doc(summary="Public keys verifying the gateway's access tokens",
         responses={200: {"description": "The JSON Web Key Set (RFC 7517)",
                          "content": {"application/json": {"schema": JWKS}}}})
def jwks():
    """The JSON Web Key Set of the gateway's token-signing keys (current and recently rotated)."""
    tokens = current_app.extensions["gateway.auth"].tokens
    tokens.ensure_key()  # a fresh deployment publishes its key before the first sign-in
    return tokens.jwks()


@blp.route("/v1/me")
@blp.response(200, MeSchema)
def me():
    """Who the credential belongs to: roles, organization, facilities, scopes, e-mail preference."""
    return _me(current_principal())


def _me(principal) -> dict:
    return {"kind": principal.kind, "id": principal.id, "org_id": principal.org_id,
            "org_kind": principal.org_kind, "roles": sorted(principal.roles),
            "facilities": sorted(principal.facilities), "scopes": sorted(principal.scopes),
            "email_notifications": service.email_notifications(db_session(), principal)}


@blp.route("/v1/me", methods=["PATCH"])
@blp.arguments(MeUpdateSchema)
@blp.response(200, MeSchema)
@blp.alt_response(403, description="FORBIDDEN: an API key has no e-mail preference")
def update_me(body):
    """Change your own preferences: `email_notifications` turns notification e-mail on or off."""
    principal = current_principal()
    if principal.kind != "user":
        from gateway.auth.web import audit_denied
        from gateway.errors import Forbidden

        audit_denied(principal)
        raise Forbidden("E-mail preferences belong to people; an API key receives no e-mail.")
    if "email_notifications" in body:
        service.set_email_notifications(adapters().db, principal=principal, enabled=body["email_notifications"],
                                        audit_ctx=audit_context())
    return _me(principal)


def _visible_org(org_id: str) -> Organization:
    return get_visible(db_session(), current_principal(), Organization, org_id,
                       db=adapters().db, audit_context=audit_context())


@blp.route("/v1/orgs/<org_id>/api-keys", methods=["POST"])
@requires(rights.ORG_ADMIN)
@blp.arguments(ApiKeyCreateSchema)
@blp.response(201, ApiKeyCreatedSchema, headers={"Location": {"$ref": "#/components/headers/Location"}})
def create_api_key(body, org_id):
    """Create an API key for the organization's systems (its admins only); the key is in this response only."""
    org = _visible_org(org_id)
    key, plaintext = org_admin.issue_api_key(adapters().db, current_principal(), org.id, scopes=body["scopes"],
                                             name=body["name"], expires_in_days=body["expires_in_days"],
                                             audit_ctx=audit_context())
    remember_credential(plaintext)
    key.key = plaintext
    return key, 201, {"Location": url_for("auth.get_api_key", org_id=org.id, key_id=key.id)}


@blp.route("/v1/orgs/<org_id>/api-keys", methods=["GET"])
@requires(rights.ORG_ADMIN)
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, ApiKeyListSchema)
def list_api_keys(page, org_id):
    """The organization's API keys (never their secrets), newest first."""
    org = _visible_org(org_id)
    query = visible_select(current_principal(), ApiKey).where(ApiKey.org_id == org.id)
    items, next_cursor = keyset_page(db_session(), query, columns=[ApiKey.created_at, ApiKey.id], **page)
    return {"items": items, "next_cursor": next_cursor}


@blp.route("/v1/orgs/<org_id>/api-keys/<key_id>", methods=["GET"])
@requires(rights.ORG_ADMIN)
@blp.response(200, ApiKeySchema)
def get_api_key(org_id, key_id):
    """One API key's metadata."""
    return _org_key(org_id, key_id)


@blp.route("/v1/orgs/<org_id>/api-keys/<key_id>", methods=["DELETE"])
@requires(rights.ORG_ADMIN)
@blp.response(204)
def revoke_api_key(org_id, key_id):
    """Revoke an API key; it stops working at once."""
    key = _org_key(org_id, key_id)
    org_admin.revoke_api_key(adapters().db, current_principal(), key.id, audit_ctx=audit_context())


def _org_key(org_id: str, key_id: str) -> ApiKey:
    org = _visible_org(org_id)
    key = get_visible(db_session(), current_principal(), ApiKey, key_id, db=adapters().db,
                      audit_context=audit_context())
    if key.org_id != org.id:  # keys are addressed under their organization
        raise NotFound()
    return key


@blp.route("/v1/orgs/<org_id>/users", methods=["POST"])
@requires(rights.ORG_ADMIN, rights.OPERATOR)
@blp.arguments(UserCreateSchema)
@blp.response(201, UserSchema)
def create_org_user(body, org_id):
    """Add a portal user to the organization: its admins add requesters and admins; operators its first admin."""
    org = _visible_org(org_id)
    try:
        return org_admin.add_user(adapters().db, current_principal(), org.id, email=body["email"],
                                  password=body["password"], role=body["role"], audit_ctx=audit_context())
    except service.ProvisioningError as error:
        raise Unprocessable(str(error), code=error.code,
                            errors=[FieldError(error.code, error.field, str(error))]) from None


@blp.route("/v1/orgs/<org_id>/users", methods=["GET"])
@requires(rights.ORG_ADMIN, rights.OPERATOR)
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, UserListSchema)
def list_org_users(page, org_id):
    """The organization's portal users, newest first."""
    org = _visible_org(org_id)
    query = visible_select(current_principal(), User).where(User.org_id == org.id)
    items, next_cursor = keyset_page(db_session(), query, columns=[User.created_at, User.id], **page)
    return {"items": items, "next_cursor": next_cursor}

"""Requester admins' page for their organization's people: add, change role, deactivate, reactivate.

The same services, rights, tenant guard and audit entries as
`POST /v1/orgs/<org>/users`, `PATCH /v1/users/<id>` and
`POST /v1/users/<id>/deactivate|reactivate`.  A new user's password is typed
by the admin and never shown again; the person can change it (or reset it by
e-mail) themselves.
"""

from __future__ import annotations

from flask import g, redirect, request, url_for

from gateway.auth import accounts, org_admin, rights, service
from gateway.auth.models import Organization, User
from gateway.auth.tenancy import get_visible, visible_select
from gateway.auth.web import audit_context, requires
from gateway.errors import FieldError, Forbidden
from gateway.portal import bp
from gateway.portal.web import once_per_form, page
from gateway.web import adapters, db_session

ROLE_LABELS = {"requester": "Requester", "requester_admin": "Administrator"}
NOTICES = {"added": "The user was added. Give them their password; they can change it under Account.",
           "deactivated": "The user was deactivated. They were signed out everywhere and cannot sign in.",
           "reactivated": "The user was reactivated and can sign in again.",
           "role": "The user's role was changed."}
USERS_SHOWN = 500


def _org() -> Organization:
    principal = g.principal
    if not principal.org_id:
        raise Forbidden("Users belong to a requester organization.")
    return get_visible(db_session(), principal, Organization, principal.org_id, db=adapters().db,
                       audit_context=audit_context())


def _user(user_id: str) -> User:
    return get_visible(db_session(), g.principal, User, user_id, db=adapters().db, audit_context=audit_context())


def _users_page(*, status: int = 200, values: dict | None = None, errors=(), notice: str | None = None):
    org, session = _org(), db_session()
    users = session.scalars(visible_select(g.principal, User).where(User.org_id == org.id)
                            .order_by(User.active.desc(), User.email).limit(USERS_SHOWN)).all()
    return page("portal/users.html", status, org=org, users=users, me=g.principal.id, errors=list(errors),
                values=values or {"email": "", "role": "requester"}, role_labels=ROLE_LABELS,
                role_options=list(ROLE_LABELS.items()), notice=notice,
                active_admins=accounts.count_active_admins(session, org.id))


@bp.route("/users", methods=["GET"])
@requires(rights.ORG_ADMIN)
def users():
    """The organization's users and the form to add one."""
    return _users_page(notice=NOTICES.get(request.args.get("done", "")))


@bp.route("/users", methods=["POST"])
@requires(rights.ORG_ADMIN)
@once_per_form(repeat_endpoint="portal.users")
def create_user():
    """Add a user (as POST /v1/orgs/<org>/users does)."""
    form = request.form
    values = {"email": (form.get("email") or "").strip()[:320], "role": form.get("role") or "requester"}
    password = form.get("password") or ""
    if values["role"] not in ROLE_LABELS:
        return _users_page(status=422, values=values, errors=[FieldError("ROLES_INVALID", "role", "Role: choose one.")])
    try:
        org_admin.add_user(adapters().db, g.principal, _org().id, email=values["email"], password=password[:257],
                           role=values["role"], audit_ctx=audit_context())
    except service.ProvisioningError as error:
        field = {"EMAIL_INVALID": "email", "EMAIL_EXISTS": "email", "PASSWORD_WEAK": "password"}.get(error.code)
        wording = {"EMAIL_INVALID": "E-mail address: enter a valid address.",
                   "EMAIL_EXISTS": "E-mail address: someone already signs in with it.",
                   "PASSWORD_WEAK": "Password: use 12 to 256 characters."}
        return _users_page(status=422, values=values,
                           errors=[FieldError(error.code, field, wording.get(error.code, str(error)))])
    return redirect(url_for("portal.users", done="added"), code=303)


def _act(user_id: str, action) -> object:
    user = _user(user_id)
    try:
        action(user)
    except accounts.AccountConflict as conflict:
        return _users_page(status=409, errors=[FieldError(conflict.code, None, conflict.detail)])
    return None


@bp.route("/users/<user_id>/deactivate", methods=["POST"])
@requires(rights.ORG_ADMIN)
def deactivate_user(user_id):
    """Deactivate a user: signed out everywhere at once, and no more sign-in."""
    refused = _act(user_id, lambda u: accounts.deactivate(adapters().db, principal=g.principal, user_id=u.id,
                                                          audit_ctx=audit_context()))
    return refused or redirect(url_for("portal.users", done="deactivated"), code=303)


@bp.route("/users/<user_id>/reactivate", methods=["POST"])
@requires(rights.ORG_ADMIN)
def reactivate_user(user_id):
    """Let a deactivated user sign in again."""
    refused = _act(user_id, lambda u: accounts.reactivate(adapters().db, principal=g.principal, user_id=u.id,
                                                          audit_ctx=audit_context()))
    return refused or redirect(url_for("portal.users", done="reactivated"), code=303)


@bp.route("/users/<user_id>/role", methods=["POST"])
@requires(rights.ORG_ADMIN)
def change_user_role(user_id):
    """Make a user a requester or an administrator (as PATCH /v1/users/<id> with `roles`)."""
    role = request.form.get("role") or ""
    if role not in ROLE_LABELS:
        _user(user_id)  # a foreign id stays a 404 whatever the form says
        return _users_page(status=422, errors=[FieldError("ROLES_INVALID", None, "Role: choose one.")])
    refused = _act(user_id, lambda u: accounts.update_roles(adapters().db, principal=g.principal, user_id=u.id,
                                                            roles=[role], facilities=None,
                                                            audit_ctx=audit_context()))
    return refused or redirect(url_for("portal.users", done="role"), code=303)

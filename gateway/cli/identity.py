"""`gateway orgs|users|staff|auditors|admins|api-keys|keys|demo` commands."""

from __future__ import annotations

import getpass
import secrets

import click

from gateway.cli import Context, emit, fail, json_option, main, pass_context


def _cli_actor() -> str:
    # Operators act from a shell; the audit trail names the OS account.
    try:
        return f"cli:{getpass.getuser()}"[:80]
    except Exception:
        return "cli:unknown"


def _provision(ctx: Context, as_json: bool, build):
    """Run a provisioning function in one transaction with its audit entry, mapping errors to exit codes."""
    from gateway.auth.service import ProvisioningError

    try:
        with ctx.db.transaction() as session:
            return build(session)
    except ProvisioningError as error:
        fail(str(error), as_json, error.code, 2)


def _audit(session, action: str, object_type: str, object_id: str, org_id: str | None = None):
    from gateway.audit.service import record

    record(session, actor=_cli_actor(), action=action, object_type=object_type, object_id=object_id,
           org_id=org_id)


password_option = click.option("--password", prompt=True, hide_input=True, confirmation_prompt=False,
                               help="At least 12 characters; prompted for when omitted.")


@main.group()
def orgs():
    """Requester organizations."""


@orgs.command("create")
@click.option("--name", required=True)
@click.option("--kind", required=True, type=click.Choice(["law_firm", "insurer", "provider"]))
@json_option
@pass_context
def orgs_create(ctx: Context, name: str, kind: str, as_json: bool):
    """Create a requester organization."""
    from gateway.auth.service import create_organization

    def build(session):
        org = create_organization(session, name=name, kind=kind)
        _audit(session, "org.create", "organization", org.id, org.id)
        return {"id": org.id, "name": org.name, "kind": org.kind}

    data = _provision(ctx, as_json, build)
    emit(data, as_json, f"organization {data['id']} ({data['kind']})")


def _create_user(ctx: Context, as_json: bool, *, email, password, roles, org_id=None, facilities=()):
    from gateway.auth.service import create_user

    def build(session):
        user = create_user(session, email=email, password=password, roles=roles, org_id=org_id,
                           facilities=list(facilities))
        _audit(session, "user.create", "user", user.id, org_id)
        return {"id": user.id, "email": user.email, "org": user.org_id, "roles": user.roles,
                "facilities": user.facilities}

    data = _provision(ctx, as_json, build)
    emit(data, as_json, f"user {data['id']} ({', '.join(data['roles'])})")


@main.group()
def users():
    """Portal users: create a requester organization's; deactivate, reactivate or reset anyone's."""


@users.command("create")
@click.option("--org", "org_id", required=True)
@click.option("--email", required=True)
@password_option
@click.option("--role", default="requester", show_default=True, type=click.Choice(["requester", "requester_admin"]))
@json_option
@pass_context
def users_create(ctx, org_id, email, password, role, as_json):
    """Create a portal user in a requester organization."""
    _create_user(ctx, as_json, email=email, password=password, roles=[role], org_id=org_id)


@users.command("mfa-reset")
@click.option("--email", required=True, help="The person's e-mail address (any role).")
@json_option
@pass_context
def users_mfa_reset(ctx, email, as_json):
    """Remove a person's two-step sign-in (lost phone and recovery codes); they set it up again. Audited."""
    from gateway.auth import mfa
    from gateway.auth.service import find_user_by_email

    with ctx.db.transaction() as session:
        user = find_user_by_email(session, email)
        if user is None:
            fail("no such user", as_json, "NOT_FOUND", 2)
        removed = mfa.reset(session, user_id=user.id, audit={"actor": _cli_actor(), "org_id": user.org_id})
        data = {"id": user.id, "removed": removed}
    emit(data, as_json, f"two-step sign-in {'removed' if removed else 'was not set up'} for user {data['id']}")


def _set_active(ctx: Context, email: str, as_json: bool, *, active: bool) -> None:
    from gateway.auth.accounts import set_active_from_console

    outcome = set_active_from_console(ctx.db, email=email, active=active, actor=_cli_actor())
    if outcome is None:
        fail("no such user", as_json, "NOT_FOUND", 2)
    state = "active" if active else "deactivated"
    data = {"id": outcome.user_id, "active": active, "changed": outcome.changed,
            "org_without_admin": outcome.org_without_admin}
    text = f"user {outcome.user_id} {state}" if outcome.changed else f"user {outcome.user_id} was already {state}"
    if outcome.org_without_admin:
        text += "; their organization has no active admin now: make someone its admin"
    emit(data, as_json, text)


@users.command("deactivate")
@click.option("--email", required=True, help="The person's e-mail address (any role).")
@json_option
@pass_context
def users_deactivate(ctx, email, as_json):
    """Deactivate an account at once (any role): its tokens and portal sessions stop working. Audited."""
    _set_active(ctx, email, as_json, active=False)


@users.command("reactivate")
@click.option("--email", required=True, help="The person's e-mail address (any role).")
@json_option
@pass_context
def users_reactivate(ctx, email, as_json):
    """Let a deactivated account sign in again (its old tokens and sessions stay ended). Audited."""
    _set_active(ctx, email, as_json, active=True)


@main.group()
def staff():
    """Facility records staff."""


@staff.command("create")
@click.option("--facility", "facilities", multiple=True, required=True)
@click.option("--email", required=True)
@password_option
@json_option
@pass_context
def staff_create(ctx, facilities, email, password, as_json):
    """Create a records-staff user bound to one or more facilities."""
    _create_user(ctx, as_json, email=email, password=password, roles=["facility_staff"], facilities=facilities)


@main.group()
def auditors():
    """Compliance auditors."""


@auditors.command("create")
@click.option("--email", required=True)
@password_option
@json_option
@pass_context
def auditors_create(ctx, email, password, as_json):
    """Create an auditor (reads the audit log)."""
    _create_user(ctx, as_json, email=email, password=password, roles=["auditor"])


@main.group()
def admins():
    """Gateway operators."""


@admins.command("create")
@click.option("--email", required=True)
@password_option
@json_option
@pass_context
def admins_create(ctx, email, password, as_json):
    """Create a gateway administrator."""
    _create_user(ctx, as_json, email=email, password=password, roles=["gateway_admin"])


@main.group("api-keys")
def api_keys_group():
    """Requester organizations' API keys."""


@api_keys_group.command("create")
@click.option("--org", "org_id", required=True)
@click.option("--scopes", required=True, help="Comma-separated: requests:write,requests:read,documents:read")
@click.option("--name", default="", help="A label, e.g. the system that uses it.")
@click.option("--expires-in-days", type=click.IntRange(1, 730), default=None)
@json_option
@pass_context
def api_keys_create(ctx, org_id, scopes, name, expires_in_days, as_json):
    """Create an API key; the key is printed once and cannot be shown again."""
    from gateway.auth.api_keys import InvalidScopes, create_api_key
    from gateway.auth.models import Organization

    with ctx.db.transaction() as session:
        if session.get(Organization, org_id) is None:
            fail("no such organization", as_json, "ORG_NOT_FOUND", 2)
        try:
            key, plaintext = create_api_key(session, org_id=org_id, name=name, expires_in_days=expires_in_days,
                                            scopes=[s.strip() for s in scopes.split(",") if s.strip()],
                                            created_by=_cli_actor())
        except InvalidScopes as error:
            fail(str(error), as_json, "SCOPES_INVALID", 2)
        _audit(session, "api_key.create", "api_key", key.id, org_id)
        data = {"id": key.id, "org": org_id, "scopes": key.scopes, "key": plaintext,
                "expires_at": key.expires_at}
    emit(data, as_json, f"API key {data['id']}:\n{plaintext}\n(shown once; store it now)")


@api_keys_group.command("revoke")
@click.argument("key_id")
@json_option
@pass_context
def api_keys_revoke(ctx, key_id, as_json):
    """Revoke an API key by id."""
    from gateway.auth.api_keys import revoke_api_key
    from gateway.auth.models import ApiKey

    with ctx.db.transaction() as session:
        key = session.get(ApiKey, key_id)
        if key is None:
            fail("no such API key", as_json, "NOT_FOUND", 2)
        changed = revoke_api_key(key)
        if changed:
            _audit(session, "api_key.revoke", "api_key", key.id, key.org_id)
        data = {"id": key.id, "revoked_at": key.revoked_at, "already_revoked": not changed}
    emit(data, as_json, f"API key {key_id} revoked")


@main.group()
def keys():
    """Token-signing keys."""


@keys.command("rotate")
@json_option
@pass_context
def keys_rotate(ctx, as_json):
    """Start signing with a new key; the old one verifies until its last token expires."""
    from gateway.auth.tokens import TokenService

    tokens = TokenService.from_settings(ctx.settings, ctx.db)
    kid = tokens.rotate()
    with ctx.db.transaction() as session:
        _audit(session, "signing_key.rotate", "signing_key", kid)
    emit({"kid": kid}, as_json, f"now signing with key {kid}")


@main.group()
def demo():
    """Demo data for the local stack."""


@demo.command("seed")
@json_option
@pass_context
def demo_seed(ctx, as_json):
    """Create (or refresh) demo organizations and users with fresh passwords and a fresh API key."""
    from gateway.demo import seed_demo

    data = seed_demo(ctx.db, actor=_cli_actor(), password_factory=lambda: secrets.token_urlsafe(12))
    if as_json:
        emit(data, True)
        return
    click.echo("Demo credentials (passwords reset on every seed):")
    for user in data["users"]:
        click.echo(f"  {user['label']:<28} {user['email']:<40} {user['password']}")
    click.echo(f"  insurer API key              {data['api_key']}")


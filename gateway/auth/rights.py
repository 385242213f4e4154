"""Who may administer what: an organization's own admins versus the gateway's operators.

Least privilege (API.md v1.1, "Abuse and least privilege"): an operator
(`gateway_admin`) manages organizations, facilities and users but never holds
a key to a requester organization's data.  So an organization's API keys and
webhooks are its `requester_admin` users' alone, and the only user an operator
adds to a requester organization is its first admin; from then on that admin
adds the rest.  These checks are the services' own, so the API and the portal
cannot disagree.  The `gateway` command (whoever runs the service, with the
database in hand) is not held to them.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.auth.models import Organization, User
from gateway.auth.principal import Principal
from gateway.errors import Forbidden

OPERATOR = "gateway_admin"
ORG_ADMIN = "requester_admin"
REQUESTER_USER_ROLES = ("requester", ORG_ADMIN)


def is_admin_of(principal: Principal, org_id: str | None) -> bool:
    """True for a requester_admin person (never an API key) of exactly this organization."""
    return (principal.kind == "user" and org_id is not None and principal.org_id == org_id
            and principal.has_role(ORG_ADMIN))


def ensure_manages_credentials(principal: Principal, org_id: str | None) -> None:
    """API keys and webhooks of `org_id`: its own admins only; operators and everyone else are refused (403)."""
    if not is_admin_of(principal, org_id):
        raise Forbidden("An organization's API keys and webhooks are managed by its own admins.")


def has_admin(session: Session, org_id: str) -> bool:
    """Whether the organization already has a requester_admin user (active or not)."""
    roles = session.scalars(select(User.roles).where(User.org_id == org_id))
    return any(ORG_ADMIN in (r or ()) for r in roles)


def ensure_may_add_user(session: Session, principal: Principal, org: Organization, role: str) -> None:
    """May `principal` add a `role` user to `org`?  Its admins: any requester role; operators: the first admin."""
    if role not in REQUESTER_USER_ROLES:
        raise Forbidden("Only requester and requester_admin users belong to an organization.")
    if is_admin_of(principal, org.id):
        return
    if principal.has_role(OPERATOR):
        if role != ORG_ADMIN:
            raise Forbidden("Operators add only an organization's first admin; its admins add its users.")
        # Lock the organization so two operators cannot both add "the first" admin (PostgreSQL; SQLite
        # serializes writers anyway).
        session.execute(select(Organization.id).where(Organization.id == org.id).with_for_update())
        if has_admin(session, org.id):
            raise Forbidden("This organization has an admin already; its admins add its users.")
        return
    raise Forbidden("Your role does not allow this operation.")

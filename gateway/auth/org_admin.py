"""What an organization's admins do to its API keys and people, for the API and the portal alike.

Each function owns its transaction: the right is checked under it (adding the first admin locks the
organization, gateway.auth.rights), the change and its audit entry commit together, and the views only
translate inputs and answers.  The caller has already read the organization or key through the tenant guard
(another tenant's is a 404 there); these functions take ids and read them again in their own transaction.
"""

from __future__ import annotations

from gateway.audit.service import record
from gateway.auth import api_keys, rights, service
from gateway.auth.models import ApiKey, Organization, User
from gateway.auth.principal import Principal
from gateway.db import Database


def issue_api_key(db: Database, principal: Principal, org_id: str, *, scopes: list[str], name: str,
                  expires_in_days: int | None, audit_ctx: dict) -> tuple[ApiKey, str]:
    """A new key for the organization's systems (its own admins only) and its plaintext, shown once.

    Raises Forbidden, or api_keys.InvalidScopes for scopes outside SCOPES."""
    rights.ensure_manages_credentials(principal, org_id)
    with db.transaction() as session:
        key, plaintext = api_keys.create_api_key(session, org_id=org_id, scopes=scopes, name=name,
                                                 expires_in_days=expires_in_days, created_by=principal.audit_actor)
        record(session, actor=principal.audit_actor, org_id=org_id, action="api_key.create",
               object_type="api_key", object_id=key.id, **audit_ctx)
    return key, plaintext


def revoke_api_key(db: Database, principal: Principal, key_id: str, *, audit_ctx: dict) -> bool:
    """Revoke a key at once; False when it was revoked already (nothing audited then)."""
    with db.write_transaction() as session:
        key = session.get(ApiKey, key_id)
        rights.ensure_manages_credentials(principal, key.org_id)
        if not api_keys.revoke_api_key(key):
            return False
        record(session, actor=principal.audit_actor, org_id=key.org_id, action="api_key.revoke",
               object_type="api_key", object_id=key.id, **audit_ctx)
        return True


def add_user(db: Database, principal: Principal, org_id: str, *, email: str, password: str, role: str,
             audit_ctx: dict) -> User:
    """A portal user of the organization: its admins add requesters and admins, operators its first admin.

    Raises Forbidden, or service.ProvisioningError (its `code` and `field` say what is wrong)."""
    with db.write_transaction() as session:
        org = session.get(Organization, org_id)
        rights.ensure_may_add_user(session, principal, org, role)
        user = service.create_user(session, email=email, password=password, roles=[role], org_id=org_id)
        record(session, actor=principal.audit_actor, org_id=org_id, action="user.create", object_type="user",
               object_id=user.id, **audit_ctx)
        return user

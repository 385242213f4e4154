"""The authenticated caller, whatever credential it presented."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.auth.models import SCOPES

REQUESTER_ROLES = frozenset({"requester", "requester_admin"})


@dataclass(frozen=True)
class Principal:
    """Who is calling: a portal user or an organization's API key, with roles, facilities and scopes."""

    kind: str  # "user" or "api_key"
    id: str
    org_id: str | None
    org_kind: str | None
    roles: frozenset[str]
    facilities: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()

    @property
    def audit_actor(self) -> str:
        """How the audit trail names this caller: never an email or a key."""
        return f"{self.kind}:{self.id}"

    def has_role(self, *roles: str) -> bool:
        """True when the caller holds any of `roles`."""
        return not self.roles.isdisjoint(roles)

    def has_scope(self, scope: str) -> bool:
        """True when the credential carries `scope` (users carry every scope their roles allow)."""
        return scope in self.scopes

    @property
    def is_requester(self) -> bool:
        """A requester organization's user or key."""
        return self.has_role(*REQUESTER_ROLES)


def scopes_for_roles(roles) -> frozenset[str]:
    """Scopes a portal user implicitly has: requesters may do everything a key could be given."""
    return frozenset(SCOPES) if REQUESTER_ROLES & set(roles) else frozenset()

"""The one tenant guard: which rows a principal may see, decided here for every model.

Each tenant-owned model registers a rule turning a principal into a SQL
condition.  Every read of such a model goes through `visible_select` or
`get_visible`, so a view cannot forget the check, and a model with no rule
cannot be read at all (`UnguardedModel`).  Another tenant's row is answered
exactly like a missing one — `NotFound`, same body — and the attempt is
audited as a denial.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Select, false, select, true
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from gateway.audit.models import AuditEvent
from gateway.audit.service import record_now
from gateway.auth.models import ApiKey, Organization, User
from gateway.auth.principal import Principal
from gateway.db import Database
from gateway.errors import NotFound

Rule = Callable[[Principal], ColumnElement[bool]]
_RULES: dict[type, Rule] = {}


class UnguardedModel(LookupError):
    """A model was read through the guard without a registered tenant rule (a programming error)."""


def tenant_rule(model: type) -> Callable[[Rule], Rule]:
    """Register the visibility rule of `model` (used as a decorator by each domain)."""
    def register(rule: Rule) -> Rule:
        _RULES[model] = rule
        return rule
    return register


def visibility(principal: Principal, model: type) -> ColumnElement[bool]:
    """The SQL condition limiting `model` to what `principal` may see."""
    try:
        rule = _RULES[model]
    except KeyError:
        raise UnguardedModel(model.__name__) from None
    return rule(principal)


def visible_select(principal: Principal, model: type) -> Select:
    """`SELECT model WHERE <visible to principal>`; add filters and ordering to it."""
    return select(model).where(visibility(principal, model))


def get_visible(session: Session, principal: Principal, model: type, object_id: str, *,
                db: Database | None = None, audit_context: dict | None = None, options: tuple = ()):
    """The row if `principal` may see it; otherwise NotFound, whether it is missing or someone else's.

    `options` are loader options for the row (e.g. its collection joined into the same query)."""
    key = model.__mapper__.primary_key[0]
    row = session.scalars(visible_select(principal, model).where(key == object_id).options(*options)
                          ).unique().one_or_none()
    if row is not None:
        return row
    if db is not None:
        audit_probe(db, principal, model, object_id, audit_context)
    raise NotFound()


def audit_probe(db: Database, principal: Principal, model: type, object_id: str,
                audit_context: dict | None = None) -> None:
    """After a NotFound: if the row exists, it belongs to another tenant — audit the probe as a denial."""
    with db.sessions() as session:
        exists = session.get(model, object_id) is not None
    if exists:
        # The caller sees a 404 identical to a missing row; the auditor sees the probe.
        record_now(db, actor=principal.audit_actor, org_id=principal.org_id, action="access.denied",
                   result="denied", object_type=model.__tablename__, object_id=str(object_id),
                   **(audit_context or {}))


def _is_admin(principal: Principal) -> bool:
    return principal.has_role("gateway_admin")


@tenant_rule(Organization)
def _organizations(principal: Principal):
    if _is_admin(principal):
        return true()
    return Organization.id == principal.org_id if principal.org_id else false()


@tenant_rule(User)
def _users(principal: Principal):
    if _is_admin(principal):
        return true()
    if principal.org_id and principal.has_role("requester_admin"):
        return User.org_id == principal.org_id
    return User.id == principal.id if principal.kind == "user" else false()


@tenant_rule(ApiKey)
def _api_keys(principal: Principal):
    # An organization's own admins only: an operator who could see (and so mint or revoke) keys could
    # act as the organization and read its requests.
    if principal.kind == "user" and principal.org_id and principal.has_role("requester_admin"):
        return ApiKey.org_id == principal.org_id
    return false()


@tenant_rule(AuditEvent)
def _audit_events(principal: Principal):
    return true() if principal.has_role("auditor") else false()

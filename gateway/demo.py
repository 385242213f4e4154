"""Demo organizations and users for `make run`; every seed resets passwords and mints a new demo key."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

from gateway.audit.service import record
from gateway.auth.api_keys import create_api_key, revoke_api_key
from gateway.auth.models import ApiKey, Organization, User
from gateway.auth.passwords import hash_password
from gateway.auth.service import create_organization, create_user
from gateway.db import Database
from gateway.facilities.service import list_facilities

DEMO_KEY_NAME = "demo"


def _org(session, name: str, kind: str) -> Organization:
    return session.scalars(select(Organization).where(Organization.name == name)).one_or_none() \
        or create_organization(session, name=name, kind=kind)


def _user(session, email: str, password: str, **kwargs) -> User:
    user = session.scalars(select(User).where(User.email == email)).one_or_none()
    if user is None:
        return create_user(session, email=email, password=password, **kwargs)
    user.password_hash = hash_password(password)
    return user


def seed_demo(db: Database, *, actor: str, password_factory: Callable[[], str]) -> dict:
    """Ensure the demo tenants exist and return their fresh credentials."""
    with db.transaction() as session:
        firm = _org(session, "Demo Law Firm LLP", "law_firm")
        insurer = _org(session, "Demo Insurance Co", "insurer")
        people = [("law-firm admin", "admin@demo-lawfirm.test", {"roles": ["requester_admin"], "org_id": firm.id}),
                  ("law-firm requester", "paralegal@demo-lawfirm.test", {"roles": ["requester"], "org_id": firm.id}),
                  ("auditor", "auditor@demo-gateway.test", {"roles": ["auditor"]})]
        for facility in list_facilities(session):
            people.append((f"records staff {facility.code}", f"records@{facility.code}.demo-gateway.test",
                           {"roles": ["facility_staff"], "facilities": [facility.code]}))
        users = []
        for label, email, kwargs in people:
            password = password_factory()
            user = _user(session, email, password, **kwargs)
            users.append({"label": label, "email": email, "password": password, "id": user.id})
        for old in session.scalars(select(ApiKey).where(ApiKey.org_id == insurer.id, ApiKey.name == DEMO_KEY_NAME)):
            revoke_api_key(old)
        key, plaintext = create_api_key(session, org_id=insurer.id, name=DEMO_KEY_NAME, created_by=actor,
                                        scopes=["requests:write", "requests:read", "documents:read"])
        record(session, actor=actor, action="demo.seed", object_type="api_key", object_id=key.id,
               org_id=insurer.id)
        return {"orgs": {"law_firm": firm.id, "insurer": insurer.id}, "users": users, "api_key": plaintext}

"""Test data made through the real service functions (no hand-built rows)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from gateway.auth.api_keys import create_api_key
from gateway.auth.service import create_organization, create_user
from gateway.clock import SystemClock

PASSWORD = "correct horse battery staple"
# The facilities' calendar the test settings name (tests/conftest.py): "today" for test data comes from the
# same clock the gateway judges dates with, never from the machine's own date.
FACILITY_TIMEZONE = "America/New_York"
CLOCK = SystemClock(ZoneInfo(FACILITY_TIMEZONE))


@dataclass
class Tenant:
    """A requester organization with an admin, a requester and an API key."""

    org_id: str
    kind: str
    admin_email: str
    requester_email: str
    admin_id: str
    requester_id: str
    api_key: str
    api_key_id: str


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_tenant(db, kind: str = "law_firm", scopes=("requests:write", "requests:read", "documents:read")) -> Tenant:
    """A fresh organization with users and a key, committed."""
    with db.transaction() as session:
        org = create_organization(session, name=unique("Org"), kind=kind)
        admin = create_user(session, email=f"{unique('admin')}@example.test", password=PASSWORD,
                            roles=["requester_admin"], org_id=org.id)
        requester = create_user(session, email=f"{unique('req')}@example.test", password=PASSWORD,
                                roles=["requester"], org_id=org.id)
        key, plaintext = create_api_key(session, org_id=org.id, scopes=list(scopes), name="test")
        return Tenant(org.id, kind, admin.email, requester.email, admin.id, requester.id, plaintext, key.id)


def make_user(db, roles: list[str], facilities: list[str] = ()) -> str:
    """A staff, auditor or admin user; returns the email."""
    email = f"{unique('-'.join(roles))}@example.test"
    with db.transaction() as session:
        create_user(session, email=email, password=PASSWORD, roles=roles, facilities=list(facilities))
    return email


def sign_in(client, email: str, password: str = PASSWORD) -> dict:
    """Authorization header for a portal user."""
    response = client.post("/v1/auth/token", json={"email": email, "password": password})
    assert response.status_code == 200, response.get_json()
    return {"Authorization": f"Bearer {response.get_json()['access_token']}"}


def bearer(credential: str) -> dict:
    return {"Authorization": f"Bearer {credential}"}


FACILITY_NAMES = {"lowell-general": "Lowell General Hospital", "melrosewakefield": "MelroseWakefield Hospital",
                  "tufts-mc": "Tufts Medical Center", "community-practices": "Riverside Family Practice"}


def facility_today():
    """Today in the facilities' calendar, from the gateway's own clock class."""
    return CLOCK.today()


def request_body(facility: str = "tufts-mc", *, recipient: str = "Smith & Jones LLP", today=None,
                 **changes) -> dict:
    """A create body that passes every rule once an authorization document is attached (as of `today`)."""
    from datetime import timedelta

    today = today or facility_today()
    body = {
        "reference": unique("CLAIM"),
        "facility": facility,
        "pathway": "authorization",
        "purpose": "litigation",
        "patient": {"first_name": "Ana", "last_name": "Silva", "date_of_birth": "1980-02-29",
                    "other_names": [], "mrn": None, "deceased": False, "minor": False},
        "records": {"types": ["visit_notes", "lab_results"], "date_from": "2025-01-01",
                    "date_to": str(today - timedelta(days=30)), "sensitive": [], "format": "electronic"},
        "delivery": {"method": "secure_download", "recipient": {"name": recipient, "address": "1 Main St, Boston"}},
        "authorization": {
            "signed_by": "patient", "signer_name": "Ana Silva", "signed_on": str(today - timedelta(days=10)),
            "expires_on": str(today + timedelta(days=170)), "expiration_event": None,
            "discloser": FACILITY_NAMES[facility], "recipient": recipient,
            "information_description": "All visit notes and lab results 2025-2026",
            "purpose_statement": "Litigation",
            "statements": {"right_to_revoke": True, "no_conditioning": True, "redisclosure": True},
            "representative": None, "specific_consents": [],
        },
        "fee_waiver_requested": False,
        "instructions": None,
    }
    if facility == "community-practices":
        body["practice"] = {"name": "Riverside Family Practice", "address": "10 River Rd, Lowell"}
    for dotted, value in changes.items():
        target = body
        *path, last = dotted.split("__")
        for key in path:
            target = target[key]
        target[last] = value
    return body


def forget_address_lockouts(db) -> None:
    """Clear the per-address sign-in throttles (tests all sign in from loopback)."""
    from sqlalchemy import delete

    from gateway.auth.models import LoginThrottle

    with db.transaction() as session:
        session.execute(delete(LoginThrottle).where(LoginThrottle.subject.like("ip:%")))

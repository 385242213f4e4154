"""The accounting of disclosures (issue 14; API.md v1.1; 45 CFR 164.528): a record at every release whatever the path,
accountable legal-process releases against exempt authorization releases, the six-year search with the clock
frozen, tenant scoping, auditing without PHI, and `gateway disclosures export` — on both databases."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest
import time_machine
from click.testing import CliRunner
from sqlalchemy import select

from gateway.audit.models import AuditEvent
from gateway.cli import disclosures as _disclosure_commands  # noqa: F401  (registers `gateway disclosures ...`)
from gateway.cli import main as gateway_cli
from gateway.intake.models import RequestEvent
from gateway.intake.release_models import Disclosure
from tests import samples
from tests.factories import bearer, make_tenant, make_user, request_body, sign_in, unique
from tests.fixtures.live import settings_environment
from tests.intake.test_lifecycle_api import move, publish, upload_release

# The six-year window is judged in the facilities' calendar: .ci/run repeats these in far time zones.
pytestmark = pytest.mark.date_sensitive

DOCUMENTS = {"authorization": ("authorization",), "subpoena": ("subpoena", "satisfactory_assurances"),
             "court_order": ("court_order",)}
# "Now" for the six-year search: noon in Boston on 30 November 2026.
T0 = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)


@pytest.fixture
def firm(db):
    return make_tenant(db, "law_firm")


@pytest.fixture
def clerk_email(db):
    return make_user(db, ["facility_staff"], ["tufts-mc"])


@pytest.fixture
def clerk(client, clerk_email):
    return sign_in(client, clerk_email)


@pytest.fixture
def auditor(client, db):
    return sign_in(client, make_user(db, ["auditor"]))


class Patient:
    """A patient of this test alone (a unique last name), as the requests and the searches name them."""

    def __init__(self, dob: str = "1975-06-15"):
        self.first, self.last, self.dob = "Ana", unique("Okafor"), dob

    def changes(self) -> dict:
        return {"patient__first_name": self.first, "patient__last_name": self.last,
                "patient__date_of_birth": self.dob}

    def query(self, **extra) -> dict:
        return {"patient": {"first_name": self.first, "last_name": self.last, "date_of_birth": self.dob}, **extra}


def in_progress(client, db, settings, firm, clerk, patient: Patient, pathway: str = "authorization",
                **changes) -> str:
    """A request of `pathway` for the patient, submitted with its documents, routed and claimed."""
    headers = bearer(firm.api_key)
    body = request_body("tufts-mc", pathway=pathway, **patient.changes(), **changes)
    created = client.post("/v1/requests", json=body, headers=headers)
    assert created.status_code == 201, created.get_json()
    request_id = created.get_json()["id"]
    for kind in DOCUMENTS[pathway]:
        uploaded = client.post(f"/v1/requests/{request_id}/documents", headers=headers,
                               content_type="multipart/form-data",
                               data={"kind": kind, "file": (io.BytesIO(samples.minimal_pdf()), f"{kind}.pdf")})
        assert uploaded.status_code == 201, uploaded.get_json()
    submitted = client.post(f"/v1/requests/{request_id}/submit", headers=headers)
    assert submitted.status_code == 202, submitted.get_json()
    publish(db, settings)
    assert client.post(f"/v1/requests/{request_id}/claim", headers=clerk).status_code == 200
    return request_id


def released(client, db, settings, firm, clerk, clerk_email, patient: Patient, pathway: str = "authorization",
             at: datetime | None = None) -> str:
    """A request released by a staff transition, at the instant `at` (the clock frozen) when given."""
    request_id = in_progress(client, db, settings, firm, clerk, patient, pathway)
    upload_release(client, clerk, request_id)
    if at is None:
        response = move(client, clerk, request_id, "fulfilled")
    else:
        with time_machine.travel(at, tick=False):
            response = move(client, sign_in(client, clerk_email), request_id, "fulfilled")
    assert response.status_code == 200, response.get_json()
    return request_id


def search(client, headers, body, query: str = ""):
    return client.post(f"/v1/disclosures/search{query}", headers=headers, json=body)


def found(client, headers, body) -> list[str]:
    response = search(client, headers, body)
    assert response.status_code == 200, response.get_json()
    return [item["request_id"] for item in response.get_json()["items"]]


def disclosures_of(db, request_id: str) -> list[Disclosure]:
    with db.transaction() as session:
        return list(session.scalars(select(Disclosure).where(Disclosure.request_id == request_id)))


# --- one record per release ------------------------------------------------------------------------------------

def test_every_release_writes_one_disclosure_record_whatever_the_path(client, db, settings, firm, clerk, clerk_email,
                                                                      auditor):
    patient = Patient()
    by_transition = released(client, db, settings, firm, clerk, clerk_email, patient)
    by_payment = in_progress(client, db, settings, firm, clerk, patient)
    upload_release(client, clerk, by_payment)
    amount = client.post(f"/v1/requests/{by_payment}/invoice", headers=clerk, json={"pages": 3}).get_json()["amount"]
    assert client.post(f"/v1/requests/{by_payment}/payments", headers=clerk,
                       json={"method": "cash", "reference": "R-77", "amount": amount}).status_code == 201
    by_waiver = in_progress(client, db, settings, firm, clerk, patient)
    release = upload_release(client, clerk, by_waiver)
    assert client.post(f"/v1/requests/{by_waiver}/invoice", headers=clerk,
                       json={"pages": 3, "waive": True, "waiver_reason": "hardship"}).status_code == 201
    not_released = in_progress(client, db, settings, firm, clerk, patient)

    for request_id in (by_transition, by_payment, by_waiver):
        assert len(disclosures_of(db, request_id)) == 1, request_id
    assert disclosures_of(db, not_released) == []
    record = disclosures_of(db, by_waiver)[0]
    assert record.to_resource() | {"disclosed_at": None} == {
        "id": record.id, "disclosed_at": None, "request_id": by_waiver, "facility": "tufts-mc",
        "pathway": "authorization", "recipient": {"name": "Smith & Jones LLP", "address": "1 Main St, Boston"},
        "description": record.description, "purpose_statement": "Litigation",
        "documents": [{"id": release["id"], "sha256": release["sha256"], "pages": 3}], "accountable": False}
    assert record.description.startswith("Visit notes, lab results, 2025-01-01 to ")
    with db.transaction() as session:
        events = session.scalars(select(RequestEvent).where(RequestEvent.request_id == by_waiver,
                                                            RequestEvent.type == "records_released")).all()
        assert [e.detail["disclosure_id"] for e in events] == [record.id]
        assert session.scalars(select(AuditEvent.action).where(AuditEvent.object_id == record.id)).all() == [
            "disclosure.record"]
    # Authorization releases are exempt from the accounting: listed only when asked for.
    assert found(client, auditor, patient.query()) == []
    assert found(client, auditor, patient.query(include_exempt=True)) == [by_waiver, by_payment, by_transition]


def test_legal_process_releases_are_accountable_and_authorization_releases_exempt(client, db, settings, firm, clerk,
                                                                                  clerk_email, auditor):
    patient = Patient()
    authorized = released(client, db, settings, firm, clerk, clerk_email, patient, "authorization")
    subpoenaed = released(client, db, settings, firm, clerk, clerk_email, patient, "subpoena")
    ordered = released(client, db, settings, firm, clerk, clerk_email, patient, "court_order")
    response = search(client, auditor, patient.query())
    items = response.get_json()["items"]
    assert [i["request_id"] for i in items] == [ordered, subpoenaed]  # newest first
    assert all(i["accountable"] for i in items)
    assert items[0]["purpose_statement"].startswith("In response to a court order (45 CFR 164.512(e)(1)(i))")
    assert items[1]["purpose_statement"].startswith("In response to a subpoena (45 CFR 164.512(e)(1)(ii))")
    assert found(client, auditor, patient.query(include_exempt=True)) == [ordered, subpoenaed, authorized]
    # Names are matched as the release rules compare them: case, accents and punctuation are cosmetic.
    loose = patient.query()
    loose["patient"].update(first_name="  ÁNA ", last_name=patient.last.upper().replace("-", " "))
    assert found(client, auditor, loose) == [ordered, subpoenaed]
    other_dob = patient.query()
    other_dob["patient"]["date_of_birth"] = "1975-06-16"
    assert found(client, auditor, other_dob) == []


# --- six years back, with the clock frozen ---------------------------------------------------------------------

def test_the_search_and_the_export_cover_six_years_back_newest_first(client, db, settings, firm, clerk, clerk_email,
                                                                     auditor):
    patient = Patient(dob="1968-02-29")
    too_old = released(client, db, settings, firm, clerk, clerk_email, patient, "court_order",
                       at=datetime(2020, 11, 29, 17, 0, tzinfo=UTC))  # 29 November 2020 in Boston
    oldest = released(client, db, settings, firm, clerk, clerk_email, patient, "subpoena",
                      at=datetime(2020, 11, 30, 5, 30, tzinfo=UTC))  # 00:30 on 30 November 2020 in Boston
    exempt = released(client, db, settings, firm, clerk, clerk_email, patient, "authorization",
                      at=datetime(2025, 10, 26, 15, 0, tzinfo=UTC))
    newest = released(client, db, settings, firm, clerk, clerk_email, patient, "court_order",
                      at=datetime(2026, 10, 31, 15, 0, tzinfo=UTC))
    with time_machine.travel(T0, tick=False):
        auditor_now = sign_in(client, make_user(db, ["auditor"]))
        answer = search(client, auditor_now, patient.query()).get_json()
        assert [i["request_id"] for i in answer["items"]] == [newest, oldest]
        assert (answer["from"], answer["to"]) == ("2020-11-30", "2026-11-30")
        assert too_old not in found(client, auditor_now, patient.query(include_exempt=True, **{"from": "2015-01-01"}))
        assert found(client, auditor_now, patient.query(include_exempt=True)) == [newest, exempt, oldest]
        assert found(client, auditor_now, patient.query(to="2025-11-30")) == [oldest]
        first = search(client, auditor_now, patient.query(), "?limit=1").get_json()
        assert [i["request_id"] for i in first["items"]] == [newest] and first["next_cursor"]
        second = search(client, auditor_now, patient.query(), f"?limit=1&cursor={first['next_cursor']}").get_json()
        assert [i["request_id"] for i in second["items"]] == [oldest] and second["next_cursor"] is None
        reversed_ = search(client, auditor_now, patient.query(**{"from": "2026-01-02", "to": "2026-01-01"}))
        assert reversed_.status_code == 422

        env = settings_environment(settings)
        base = ["disclosures", "export", "--first-name", patient.first, "--last-name", patient.last,
                "--dob", patient.dob]
        as_json = CliRunner().invoke(gateway_cli, [*base, "--json"], env=env)
        assert as_json.exit_code == 0, as_json.output
        exported = json.loads(as_json.stdout)
        assert [i["request_id"] for i in exported["items"]] == [newest, oldest]  # exactly the accountable ones
        assert exported["from"] == "2020-11-30" and all(i["accountable"] for i in exported["items"])
        as_csv = CliRunner().invoke(gateway_cli, [*base, "--csv", "--include-exempt"], env=env)
        assert as_csv.exit_code == 0, as_csv.output
        rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["request_id"] for r in rows] == [newest, exempt, oldest]
    assert [r["accountable"] for r in rows] == ["true", "false", "true"]
    assert rows[0]["recipient_name"] == "Smith & Jones LLP" and rows[0]["facility"] == "tufts-mc"
    assert rows[0]["documents"].count(":") == 2  # id:sha256:pages
    assert patient.last not in as_csv.stdout and patient.dob not in as_csv.stdout
    with db.transaction() as session:
        exports = session.scalars(select(AuditEvent).where(AuditEvent.action == "disclosure.export")).all()
    assert exports and all(e.actor.startswith("cli:") and e.object_id is None for e in exports)


# --- who may search ------------------------------------------------------------------------------------------------

def test_staff_see_their_facilities_only_and_everyone_else_is_refused(client, db, settings, firm, clerk, clerk_email,
                                                                      auditor):
    patient = Patient()
    request_id = released(client, db, settings, firm, clerk, clerk_email, patient, "court_order")
    assert found(client, clerk, patient.query()) == [request_id]
    assert found(client, auditor, patient.query()) == [request_id]
    lowell = sign_in(client, make_user(db, ["facility_staff"], ["lowell-general"]))
    assert found(client, lowell, patient.query()) == []
    admin = sign_in(client, make_user(db, ["gateway_admin"]))
    for headers in (bearer(firm.api_key), sign_in(client, firm.requester_email), admin):
        refused = search(client, headers, patient.query())
        assert refused.status_code == 403 and refused.get_json()["code"] == "FORBIDDEN"
    assert search(client, {}, patient.query()).status_code == 401
    # Patient data in a query string is not how this search works: the body is required.
    assert client.post(f"/v1/disclosures/search?last_name={patient.last}", headers=auditor).status_code in (400, 422)


def test_the_search_is_audited_and_names_the_patient_in_no_url_audit_entry_or_log(client, db, settings, firm, clerk,
                                                                                 clerk_email, auditor, caplog):
    patient = Patient(dob="1949-12-31")
    released(client, db, settings, firm, clerk, clerk_email, patient, "subpoena")
    caplog.clear()
    with db.transaction() as session:
        before = session.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1))
    assert len(found(client, auditor, patient.query())) == 1
    bad = search(client, auditor, {"patient": {"first_name": patient.first, "last_name": patient.last,
                                               "date_of_birth": "1949-13-31"}})
    assert bad.status_code == 422 and patient.last not in bad.get_data(as_text=True)
    with db.transaction() as session:
        entries = session.scalars(select(AuditEvent).where(AuditEvent.seq > before)).all()
    searches = [e for e in entries if e.action == "disclosure.search"]
    assert len(searches) == 1 and searches[0].object_id is None and searches[0].result == "success"
    for entry in entries:
        assert patient.last not in json.dumps({c.name: str(getattr(entry, c.name)) for c in entry.__table__.columns})
    # Every record with its structured fields (the JSON log lines are made of them).
    logged = "\n".join(json.dumps(vars(record), default=str) for record in caplog.records)
    assert "/v1/disclosures/search" in logged
    assert patient.last not in logged and patient.dob not in logged and "1949" not in logged

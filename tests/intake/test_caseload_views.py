"""Caseload views over HTTP, on SQLite and PostgreSQL: `updated_after`, `overdue`, `sort` with keyset cursors
(every item once, in order, across pages, ties and NULL due dates included), search by reference and patient
name in a POST body, and the streamed CSV export (no date of birth, formula-safe cells)."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from sqlalchemy import select

from gateway.audit.models import AuditEvent
from gateway.db import utcnow
from gateway.intake import caseload
from gateway.intake import service as intake_service
from gateway.intake.models import RecordsRequest
from gateway.intake.schemas import LIST_SORTS, RequestCreateSchema
from tests.factories import bearer, make_tenant, request_body
from tests.test_pagination import admin_principal, walk

# Judged against the facilities' calendar: .ci/run repeats these with the machine in far time zones.
pytestmark = pytest.mark.date_sensitive

COUNT = 23
OWED = caseload.OWED_STATUSES
STATUS_CYCLE = ("routed", "in_progress", "draft", "fulfilled", "on_hold", "returned", "submitted")


@pytest.fixture(scope="module")
def tenant(db):
    return make_tenant(db)


@pytest.fixture(scope="module")
def caseload_rows(db, tenant, clock):
    """COUNT requests: statuses in a cycle, due dates in the past, today and ahead (ties, and some NULL),
    updated_at shared by threes; two patients with names to search for, and a reference that is a formula."""
    principal, loader = admin_principal(tenant), RequestCreateSchema()
    ids = [intake_service.create_request(db, principal=principal, audit_ctx={},
                                         body=loader.load(request_body("lowell-general")))
           for _ in range(COUNT)]
    base, today = utcnow().replace(microsecond=0), clock.today()
    with db.transaction() as session:
        for index, request_id in enumerate(ids):
            req = session.get(RecordsRequest, request_id)
            req.status = STATUS_CYCLE[index % len(STATUS_CYCLE)]
            req.due_on = None if index % 5 == 0 else today + timedelta(days=(index % 4) - 2)
            req.updated_at = base - timedelta(minutes=index // 3)
            if index in (3, 11):
                req.patient = {**req.patient, "first_name": "Zoë", "last_name": "Quintanilla-Ruiz"}
            if index == 7:
                req.reference = "=HYPERLINK(\"http://evil.test\")"
                req.patient = {**req.patient, "first_name": "+Bob", "last_name": "@Smith"}
        rows = [session.get(RecordsRequest, request_id) for request_id in ids]
        return {r.id: (r.status, r.due_on, r.updated_at, r.created_at) for r in rows}


def test_the_api_and_the_service_offer_the_same_sorts():
    assert set(LIST_SORTS) == set(caseload.SORTS)


def test_due_on_sort_walks_every_item_once_oldest_due_first_nulls_last(client, tenant, caseload_rows):
    seen = walk(client, "/v1/requests", bearer(tenant.api_key), limit=4, sort="due_on")
    expected = sorted(caseload_rows, key=lambda i: (caseload_rows[i][1] is None, caseload_rows[i][1] or 0, i))
    assert seen == expected


def test_last_updated_first_and_updated_after(client, tenant, caseload_rows):
    seen = walk(client, "/v1/requests", bearer(tenant.api_key), limit=5, sort="-updated_at")
    assert seen == sorted(caseload_rows, key=lambda i: (caseload_rows[i][2], i), reverse=True)
    since = sorted({row[2] for row in caseload_rows.values()})[-3]
    changed = walk(client, "/v1/requests", bearer(tenant.api_key), limit=3, sort="-updated_at",
                   updated_after=since.isoformat())
    assert set(changed) == {i for i, row in caseload_rows.items() if row[2] > since} and changed


def test_overdue_is_owed_work_past_its_due_date_in_the_facility_calendar(client, tenant, caseload_rows, clock):
    today = clock.today()
    seen = walk(client, "/v1/requests", bearer(tenant.api_key), limit=3, overdue="true", sort="due_on")
    expected = {i for i, (status, due, _u, _c) in caseload_rows.items() if status in OWED and due and due < today}
    assert set(seen) == expected and len(seen) == len(expected) and expected
    everything = walk(client, "/v1/requests", bearer(tenant.api_key), limit=100, overdue="false")
    assert set(everything) == set(caseload_rows)


@pytest.mark.parametrize("query", [{"sort": "created_at"}, {"overdue": "perhaps"}, {"overdue": "1"},
                                   {"updated_after": "yesterday"}])
def test_bad_list_parameters_are_422(client, tenant, query):
    response = client.get("/v1/requests", headers=bearer(tenant.api_key), query_string=query)
    assert response.status_code == 422 and response.get_json()["errors"][0]["field"] == next(iter(query))


def test_a_cursor_of_one_sort_is_refused_by_another(client, tenant, caseload_rows):
    first = client.get("/v1/requests", headers=bearer(tenant.api_key), query_string={"limit": 2, "sort": "due_on"})
    cursor = first.get_json()["next_cursor"]
    other = client.get("/v1/requests", headers=bearer(tenant.api_key),
                       query_string={"limit": 2, "sort": "-updated_at", "cursor": cursor})
    assert other.status_code == 400 and other.get_json()["code"] == "INVALID_CURSOR"


def search(client, tenant, **body):
    return client.post("/v1/requests/search", headers=bearer(tenant.api_key), json=body)


def test_search_by_patient_name_and_reference_in_the_body_audited_without_the_terms(client, db, tenant,
                                                                                    caseload_rows):
    wanted = sorted(caseload_rows)
    found = search(client, tenant, text="quintanilla zo", sort="due_on", limit=1)
    assert found.status_code == 200
    first = found.get_json()
    more = search(client, tenant, text="quintanilla zo", sort="due_on", limit=1, cursor=first["next_cursor"])
    names = [(r["patient"]["first_name"], r["patient"]["last_name"]) for r in
             first["items"] + more.get_json()["items"]]
    assert names == [("Zoë", "Quintanilla-Ruiz")] * 2 and more.get_json()["next_cursor"] is None
    reference = client.get(f"/v1/requests/{wanted[0]}", headers=bearer(tenant.api_key)).get_json()["reference"]
    by_reference = search(client, tenant, text=reference.lower(), filters={"overdue": False}).get_json()["items"]
    assert [r["id"] for r in by_reference] == [wanted[0]]
    with db.sessions() as session:
        entry = session.scalars(select(AuditEvent).where(AuditEvent.request_id == found.headers["X-Request-ID"])).one()
    assert entry.action == "request.search" and "quintanilla" not in str(vars(entry)).lower()
    # Another organization finds nothing of these.
    assert search(client, make_tenant(db), text="quintanilla").get_json()["items"] == []


@pytest.mark.parametrize(("body", "field"), [({"text": "q"}, "text"), ({}, "text"),
                                             ({"text": "silva", "filters": {"mrn": "1"}}, "filters.mrn"),
                                             ({"text": "silva", "filters": {"overdue": 0}}, "filters.overdue"),
                                             ({"text": "silva", "sort": "name"}, "sort")])
def test_bad_searches_are_field_errors(client, tenant, body, field):
    response = search(client, tenant, **body)
    assert response.status_code == 422 and {e["field"] for e in response.get_json()["errors"]} == {field}


def test_csv_export_streams_every_listed_request_without_dates_of_birth(client, db, tenant, caseload_rows, clock):
    response = client.get("/v1/requests", headers={**bearer(tenant.api_key), "Accept": "text/csv"},
                          query_string={"sort": "due_on", "limit": 2})
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="requests.csv"'
    assert response.is_streamed
    text = response.get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["id"] for r in rows] == walk(client, "/v1/requests", bearer(tenant.api_key), limit=100, sort="due_on")
    assert tuple(rows[0]) == caseload.CSV_COLUMNS
    assert "1980-02-29" not in text and "date_of_birth" not in text and "mrn" not in text
    formula = next(r for r in rows if "HYPERLINK" in r["reference"])
    assert formula["reference"].startswith("'=") and formula["patient_first_name"] == "'+Bob"
    assert formula["patient_last_name"] == "'@Smith"
    assert {r["overdue"] for r in rows} == {"true", "false"}
    # The filters apply; the export is audited as one.
    overdue = client.get("/v1/requests", headers={**bearer(tenant.api_key), "Accept": "text/csv"},
                         query_string={"overdue": "true"}).get_data(as_text=True)
    assert {r["overdue"] for r in csv.DictReader(io.StringIO(overdue))} == {"true"}
    with db.sessions() as session:
        actions = session.scalars(select(AuditEvent.action).where(
            AuditEvent.request_id == response.headers["X-Request-ID"])).all()
    assert actions == ["request.export"]
    # JSON stays the default, also for a client that accepts anything.
    assert client.get("/v1/requests", headers={**bearer(tenant.api_key), "Accept": "*/*"}).is_json


def test_the_export_reads_a_batch_at_a_time(db, tenant, caseload_rows, clock):
    query = caseload.filtered(admin_principal(tenant), today=clock.today())
    chunks = list(caseload.export_csv(db, query, sort="-updated_at", today=clock.today(), batch=5))
    assert len(chunks) == 1 + -(-COUNT // 5)  # the header, then one chunk per batch
    assert all(chunk.count("\r\n") <= 5 for chunk in chunks[1:])
    assert len(list(csv.reader(io.StringIO("".join(chunks))))) == COUNT + 1


@pytest.mark.parametrize(("value", "safe"), [("=1+2", "'=1+2"), ("-3", "'-3"), ("@SUM(A1)", "'@SUM(A1)"),
                                             ("\tx", "'\tx"), ("Silva", "Silva"), (None, ""), ("a=b", "a=b")])
def test_cells_are_formula_safe(value, safe):
    assert caseload.safe_cell(value) == safe


def test_search_is_not_a_request_id(client, tenant):
    response = client.get("/v1/requests/search", headers=bearer(tenant.api_key))
    assert response.status_code == 405 and response.get_json()["code"] == "METHOD_NOT_ALLOWED"
    assert set(client.options("/v1/requests/search").headers["Allow"].split(", ")) == {"POST", "OPTIONS"}

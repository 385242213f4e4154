"""Cursor paging over every list, on SQLite and PostgreSQL: 250+ items each, with ties and NULLs in the sort
keys, walked page by page over HTTP; every item comes exactly once, in the documented order.  Garbage
cursors are 400 INVALID_CURSOR, never a 500."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from gateway.audit.models import AuditEvent
from gateway.auth.principal import Principal, scopes_for_roles
from gateway.db import utcnow
from gateway.intake import lifecycle
from gateway.intake import service as intake_service
from gateway.intake.models import RecordsRequest, RequestEvent
from gateway.intake.routing_policy import facility_queue
from gateway.intake.schemas import RequestCreateSchema
from gateway.pagination import _key, _ordering_digest
from gateway.webhooks import service as webhooks_service
from gateway.webhooks.models import WebhookDelivery
from tests.factories import bearer, make_tenant, make_user, request_body, sign_in, unique

COUNT = 263  # not a multiple of any page size used below
FACILITY = "melrosewakefield"
TIE_GROUP = 10  # this many items share one created_at / due_on
NULL_EVERY = 9  # every ninth routed request has no due date


def admin_principal(tenant) -> Principal:
    roles = ["requester_admin"]
    return Principal(kind="user", id=tenant.admin_id, org_id=tenant.org_id, org_kind=tenant.kind,
                     roles=frozenset(roles), scopes=scopes_for_roles(roles))


@pytest.fixture(scope="module")
def tenant(db):
    return make_tenant(db)


@pytest.fixture(scope="module")
def many_requests(db, tenant, clock):
    """COUNT requests of one organization, routed to FACILITY: created_at and due_on shared by groups of
    TIE_GROUP, and some due dates NULL (made through the intake service, then routed in one transaction)."""
    principal, loader = admin_principal(tenant), RequestCreateSchema()
    base, today = utcnow().replace(microsecond=0), clock.today()
    ids = [intake_service.create_request(db, principal=principal, audit_ctx={},
                                         body=loader.load(request_body(FACILITY)))
           for _ in range(COUNT)]
    with db.transaction() as session:
        made = [session.get(RecordsRequest, request_id) for request_id in ids]
        for index, req in enumerate(made):
            req.created_at = base - timedelta(seconds=index // TIE_GROUP)
            req.status, req.routing_queue, req.routed_at = "routed", facility_queue(FACILITY), base
            req.due_on = None if index % NULL_EVERY == 0 else today + timedelta(days=(index // TIE_GROUP) % 7)
        ids = [req.id for req in made]
    return ids


def walk(client, path: str, headers: dict, *, limit: int, **query) -> list[str]:
    """Every page of a list from the first, following next_cursor; the ids in the order served."""
    seen, cursor, pages = [], None, 0
    while True:
        params = {**query, "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = client.get(path, headers=headers, query_string=params)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert len(body["items"]) <= limit
        seen += [item.get("id", item.get("seq")) for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return seen
        assert len(body["items"]) == limit and len(cursor) <= 200 and pages < 1000


def assert_each_once_in_order(seen: list, expected: list) -> None:
    assert len(seen) == len(set(seen)), "an item was served twice"
    assert seen == expected


@pytest.mark.parametrize("limit", [7, 25, 100])
def test_requests_newest_first_across_pages(client, db, tenant, many_requests, limit):
    with db.transaction() as session:
        rows = session.execute(select(RecordsRequest.id, RecordsRequest.created_at)
                               .where(RecordsRequest.org_id == tenant.org_id)).all()
    expected = [r.id for r in sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)]
    assert len(expected) == COUNT and len({r.created_at for r in rows}) < COUNT / 5  # plenty of ties
    assert_each_once_in_order(walk(client, "/v1/requests", bearer(tenant.api_key), limit=limit), expected)
    # Filters and the cursor compose: only routed ones, still each exactly once.
    assert_each_once_in_order(walk(client, "/v1/requests", bearer(tenant.api_key), limit=limit,
                                   status="routed", facility=FACILITY), expected)


@pytest.mark.parametrize("limit", [7, 100])
def test_facility_queue_oldest_due_first_nulls_last(client, db, many_requests, limit):
    """The queue's sort key is a date that may be NULL: the page-2 500 on SQLite of issue 13."""
    staff = sign_in(client, make_user(db, ["facility_staff"], [FACILITY]))
    with db.transaction() as session:
        rows = session.execute(select(RecordsRequest.id, RecordsRequest.due_on).where(
            RecordsRequest.facility == FACILITY, RecordsRequest.routed_at.is_not(None),
            RecordsRequest.status.in_(("routed", "in_progress", "on_hold", "awaiting_payment")))).all()
    expected = [r.id for r in sorted(rows, key=lambda r: (r.due_on is None, r.due_on or 0, r.id))]
    nulls = sum(1 for r in rows if r.due_on is None)
    assert len(expected) >= COUNT and nulls > 20
    assert_each_once_in_order(walk(client, f"/v1/facilities/{FACILITY}/queue", staff, limit=limit), expected)
    routed_only = walk(client, f"/v1/facilities/{FACILITY}/queue", staff, limit=limit, status="routed",
                       queue="facility")
    assert set(many_requests) <= set(routed_only)


@pytest.mark.parametrize("limit", [7, 100])
def test_facility_queue_last_updated_first_across_pages(client, db, many_requests, limit):
    staff = sign_in(client, make_user(db, ["facility_staff"], [FACILITY]))
    with db.transaction() as session:
        rows = session.execute(select(RecordsRequest.id, RecordsRequest.updated_at).where(
            RecordsRequest.facility == FACILITY, RecordsRequest.routed_at.is_not(None),
            RecordsRequest.status.in_(("routed", "in_progress", "on_hold", "awaiting_payment")))).all()
    expected = [r.id for r in sorted(rows, key=lambda r: (r.updated_at, r.id), reverse=True)]
    assert_each_once_in_order(walk(client, f"/v1/facilities/{FACILITY}/queue", staff, limit=limit,
                                   sort="-updated_at"), expected)


def walk_search(client, headers: dict, body: dict, *, limit: int) -> tuple[list[str], int]:
    """Every page of a queue search (POST, the terms in the body): the ids served, and the number of pages.
    A page may be short of `limit` and still have a cursor (the search read as much as one call may)."""
    seen, cursor, pages = [], None, 0
    while True:
        response = client.post(f"/v1/facilities/{FACILITY}/queue/search", headers=headers,
                               json={**body, "limit": limit, "cursor": cursor})
        assert response.status_code == 200, response.get_json()
        page = response.get_json()
        assert len(page["items"]) <= limit
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return seen, pages
        assert len(cursor) <= 200 and pages < 1000


@pytest.mark.parametrize(("limit", "scan"), [(7, 5000), (7, 20), (100, 30)])
def test_queue_search_serves_every_match_once_in_order_whatever_the_scan_bound(client, db, many_requests, limit,
                                                                              scan, monkeypatch):
    """Search judges rows in Python a batch at a time, at most `scan` rows a call: still keyset-correct."""
    from gateway.routing import queue as queues

    surname = unique("Oyelaran")
    with db.transaction() as session:  # every third request's patient gets a name of this test's own
        for request_id in many_requests[::3]:
            req = session.get(RecordsRequest, request_id)
            req.patient = {**req.patient, "last_name": surname}
        rows = session.execute(select(RecordsRequest.id, RecordsRequest.due_on).where(
            RecordsRequest.id.in_(many_requests[::3]))).all()
    expected = [r.id for r in sorted(rows, key=lambda r: (r.due_on is None, r.due_on or 0, r.id))]
    read, matcher = [], queues.matcher

    def counting(text):
        keep = matcher(text)
        read.append(0)

        def judged(row):
            read[-1] += 1
            return keep(row)
        return judged

    monkeypatch.setattr(queues, "SEARCH_SCAN_LIMIT", scan)
    monkeypatch.setattr(queues, "SEARCH_BATCH", min(scan, 250))
    monkeypatch.setattr(queues, "matcher", counting)
    staff = sign_in(client, make_user(db, ["facility_staff"], [FACILITY]))
    seen, pages = walk_search(client, staff, {"text": surname.lower()}, limit=limit)
    assert_each_once_in_order(seen, expected)
    assert max(read) <= scan and len(read) == pages
    if scan < len(many_requests):
        assert pages > len(expected) / limit  # the bound made pages short, and nothing was lost
    routed_only, _ = walk_search(client, staff, {"text": surname, "filters": {"status": "routed"}}, limit=limit)
    assert_each_once_in_order(routed_only, expected)  # every one of them is routed


@pytest.mark.parametrize("limit", [9, 100])
def test_request_events_oldest_first(client, db, tenant, many_requests, limit):
    request_id = many_requests[limit]  # one request per run
    with db.transaction() as session:
        req = session.get(RecordsRequest, request_id)
        at = utcnow()
        for index in range(COUNT):
            event = lifecycle.add_event(session, req, "note", "test", n=index)
            event.at = at  # every event at the same instant: the order still holds
    with db.transaction() as session:
        expected = session.scalars(select(RequestEvent.id).where(RequestEvent.request_id == request_id)
                                   .order_by(RequestEvent.id)).all()
    assert len(expected) > COUNT
    served = []
    cursor = None
    while True:
        response = client.get(f"/v1/requests/{request_id}/events", headers=bearer(tenant.api_key),
                              query_string={"limit": limit, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200
        served += [(item["type"], item["detail"].get("n")) for item in response.get_json()["items"]]
        cursor = response.get_json()["next_cursor"]
        if cursor is None:
            break
    notes = [n for kind, n in served if kind == "note"]
    assert len(served) == len(expected) and notes == sorted(set(notes)) == list(range(COUNT))


@pytest.mark.parametrize("limit", [11, 100])
def test_audit_newest_first(client, db, limit):
    from gateway.audit.service import record

    actor = unique("pager")
    with db.transaction() as session:
        for index in range(COUNT):
            record(session, actor=actor, action="test.page", object_type="test", object_id=str(index))
    auditor = sign_in(client, make_user(db, ["auditor"]))
    seen = walk(client, "/v1/audit", auditor, limit=limit, actor=actor)
    assert len(seen) == COUNT and seen == sorted(seen, reverse=True) and len(set(seen)) == COUNT


@pytest.mark.parametrize("limit", [13, 100])
def test_webhook_deliveries_newest_first(client, db, settings, limit):
    tenant = make_tenant(db)
    with db.transaction() as session:
        webhook, _ = webhooks_service.create_webhook(session, principal=admin_principal(tenant),
                                                     url="https://93.184.216.34/hooks",
                                                     events=["request.status_changed"], settings=settings)
        deliveries = [d for _ in range(COUNT) for d in webhooks_service.emit(
            session, org_id=tenant.org_id, event_type="request.status_changed", data={"status": "routed"})]
        base = utcnow()
        for index, delivery in enumerate(deliveries):
            delivery.created_at = base - timedelta(seconds=index // TIE_GROUP)
        webhook_id = webhook.id
    with db.transaction() as session:
        rows = session.execute(select(WebhookDelivery.id, WebhookDelivery.created_at)
                               .where(WebhookDelivery.webhook_id == webhook_id)).all()
    expected = [r.id for r in sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)]
    admin = sign_in(client, tenant.admin_email)
    assert_each_once_in_order(walk(client, f"/v1/webhooks/{webhook_id}/deliveries", admin, limit=limit), expected)
    assert len(expected) == COUNT


# --- cursors that were not issued by the list ---------------------------------------------------------------

def _b64(value) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _digest(*columns, descending: bool) -> str:
    return _ordering_digest([_key(c) for c in columns], descending)


BAD_BY_KIND = {  # values of the wrong type, or out of range, for a key of each kind
    "datetime": [None, True, 1.5, 10 ** 30, "2026-11-23T18:16:00Z", [], {}],
    "date": [True, 20261123, "2026-02-30", "2026-11-23T00:00:00", "23/11/2026", "x" * 40],
    "int": [None, True, 1.5, 2 ** 64, "5", []],
    "str": [None, True, 5, "x" * 37, {}],
}


def garbage(columns, descending: bool, good_keys: list) -> list[str]:
    """Cursors a client could forge for a list ordered by `columns`: right shape, wrong values; wrong shapes."""
    digest = _digest(*columns, descending=descending)
    cursors = ["é", _b64(b"\xff\xfe"), _b64({"k": good_keys}), _b64([1, digest]), _b64([1, digest, good_keys[:-1]]),
               _b64([2, digest, good_keys]), _b64([1, "0123456789", good_keys]),
               _b64([1, digest, [*good_keys, "extra"]]), _b64("[" * 140), _b64([1, digest, "not a list"])]
    for position, column in enumerate(columns):
        for bad in BAD_BY_KIND[_key(column).kind.__name__]:
            keys = list(good_keys)
            keys[position] = bad
            cursors.append(_b64([1, digest, keys]))
    return cursors


def test_garbage_cursors_are_400_on_every_list(client, db, tenant, many_requests):
    staff = sign_in(client, make_user(db, ["facility_staff"], [FACILITY]))
    auditor = sign_in(client, make_user(db, ["auditor"]))
    admin = sign_in(client, tenant.admin_email)
    some_id = many_requests[0]
    lists = [
        ("/v1/requests", bearer(tenant.api_key), (RecordsRequest.created_at, RecordsRequest.id), True,
         [1_700_000_000_000_000, some_id]),
        (f"/v1/facilities/{FACILITY}/queue", staff, (RecordsRequest.due_on, RecordsRequest.id), False,
         ["2026-11-23", some_id]),
        (f"/v1/requests/{some_id}/events", bearer(tenant.api_key), (RequestEvent.id,), False, [5]),
        ("/v1/audit", auditor, (AuditEvent.seq,), True, [5]),
        (f"/v1/orgs/{tenant.org_id}/api-keys", admin, None, True, None),
        ("/v1/webhooks", admin, None, True, None),
    ]
    issued = {}
    for path, headers, _, _, _ in lists:
        first = client.get(path, headers=headers, query_string={"limit": 1}).get_json()
        issued[path] = first["next_cursor"]
    checked = 0
    for path, headers, columns, descending, good in lists:
        cursors = ["!!notours", "a" * 201, _b64(b"not json"), _b64({"k": [1]})]
        if columns is not None:
            cursors += garbage(columns, descending, good)
        cursors += [c for other, c in issued.items() if other != path and c]  # another list's cursor
        for cursor in cursors:
            response = client.get(path, headers=headers, query_string={"cursor": cursor})
            assert response.status_code == 400, (path, cursor, response.status_code, response.get_json())
            body = response.get_json()
            assert body["code"] == "INVALID_CURSOR" and body["errors"][0]["field"] == "cursor"
            assert response.mimetype == "application/problem+json"
            checked += 1
        if issued[path]:  # and the list's own cursor still works
            assert client.get(path, headers=headers, query_string={"cursor": issued[path]}).status_code == 200
    assert checked > 100


def test_a_well_formed_cursor_at_a_null_position_resumes_among_the_nulls(client, db, many_requests):
    """A cursor whose due date is NULL (the tail of the queue) resumes after it and never before it."""
    staff = sign_in(client, make_user(db, ["facility_staff"], [FACILITY]))
    with db.transaction() as session:
        nulls = sorted(session.scalars(select(RecordsRequest.id).where(
            RecordsRequest.facility == FACILITY, RecordsRequest.due_on.is_(None),
            RecordsRequest.routed_at.is_not(None),
            RecordsRequest.status.in_(("routed", "in_progress", "on_hold", "awaiting_payment")))).all())
    digest = _digest(RecordsRequest.due_on, RecordsRequest.id, descending=False)
    cursor = _b64([1, digest, [None, nulls[2]]])
    page = client.get(f"/v1/facilities/{FACILITY}/queue", headers=staff,
                      query_string={"cursor": cursor, "limit": 100}).get_json()
    assert [item["id"] for item in page["items"]] == nulls[3:103]
    assert all(item["due_on"] is None for item in page["items"])

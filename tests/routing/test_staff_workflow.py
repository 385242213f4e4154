"""The records-staff workflow over HTTP: queue, claim, transitions with reasons, review forwarding."""

from __future__ import annotations

import io
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from sqlalchemy import update

from gateway.adapters import build_redis
from gateway.intake.models import RecordsRequest
from gateway.routing import relay
from gateway.routing.dispatch import RqDispatcher
from tests import samples
from tests.factories import bearer, facility_today, make_tenant, make_user, request_body, sign_in
from tests.routing.helpers import submitted

# Judged against the facilities' calendar: .ci/run repeats these with the machine in far time zones.
pytestmark = pytest.mark.date_sensitive


def publish(db, settings):
    dispatcher = RqDispatcher(build_redis(settings))
    while relay.publish_due(db, dispatcher, batch=100).done:
        pass


@pytest.fixture
def staff(client, db):
    return sign_in(client, make_user(db, ["facility_staff"], ["lowell-general"]))


def routed(client, db, settings, tenant, facility="lowell-general", **changes):
    request_id = submitted(client, tenant, facility, **changes)
    publish(db, settings)
    return request_id


def move(client, headers, request_id, to, reasons=(), note=None):
    return client.post(f"/v1/requests/{request_id}/transitions", headers=headers,
                       json={"to": to, "reasons": list(reasons), **({"note": note} if note else {})})


def _whole_queue(client, headers, url: str) -> list[dict]:
    """Every page of a queue (the suite's shared database may hold more than a page of routed requests)."""
    items, cursor = [], None
    while True:
        page = client.get(url + (f"&cursor={cursor}" if cursor else ""), headers=headers).get_json()
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items


def test_queue_is_for_the_facility_staff_oldest_due_first(client, db, settings, staff):
    tenant = make_tenant(db)
    first, second = routed(client, db, settings, tenant), routed(client, db, settings, tenant)
    with db.transaction() as session:  # make the second one overdue
        session.execute(update(RecordsRequest).where(RecordsRequest.id == second)
                        .values(due_on=facility_today() - timedelta(days=1)))
    items = _whole_queue(client, staff, "/v1/facilities/lowell-general/queue?status=routed&limit=100")
    ids = [item["id"] for item in items]
    assert ids.index(second) < ids.index(first)
    overdue = {item["id"]: item["overdue"] for item in items}
    assert overdue[second] is True and overdue[first] is False
    other_staff = sign_in(client, make_user(db, ["facility_staff"], ["tufts-mc"]))
    assert client.get("/v1/facilities/lowell-general/queue", headers=other_staff).status_code == 403
    assert client.get(f"/v1/requests/{first}", headers=other_staff).status_code == 404
    assert client.get("/v1/facilities/lowell-general/queue", headers=bearer(tenant.api_key)).status_code == 403


def test_claim_transitions_and_their_rules(client, db, settings, staff):
    tenant = make_tenant(db)
    request_id = routed(client, db, settings, tenant)
    assert client.post(f"/v1/requests/{request_id}/claim", headers=bearer(tenant.api_key)).status_code == 403
    claimed = client.post(f"/v1/requests/{request_id}/claim", headers=staff)
    assert claimed.status_code == 200 and claimed.get_json()["status"] == "in_progress"
    again = client.post(f"/v1/requests/{request_id}/claim", headers=staff)  # claiming it again yourself: no-op
    assert again.status_code == 200 and again.get_json()["version"] == claimed.get_json()["version"]
    no_reason = move(client, staff, request_id, "returned")
    assert no_reason.status_code == 422 and no_reason.get_json()["code"] == "REASONS_REQUIRED"
    bad_reason = move(client, staff, request_id, "denied", ["BECAUSE"])
    assert bad_reason.status_code == 422
    early = move(client, staff, request_id, "fulfilled")
    assert early.status_code == 409 and early.get_json()["code"] == "RELEASE_REQUIRED"
    held = move(client, staff, request_id, "on_hold", ["NEEDS_PHYSICIAN_APPROVAL"])
    assert held.get_json()["status"] == "on_hold", held.get_json()
    assert move(client, staff, request_id, "fulfilled").status_code == 409  # not from on_hold
    assert move(client, staff, request_id, "in_progress").get_json()["status"] == "in_progress"
    release = client.post(f"/v1/requests/{request_id}/documents", headers=staff, content_type="multipart/form-data",
                          data={"kind": "release", "file": (io.BytesIO(samples.minimal_pdf(pages=3)), "records.pdf")})
    assert release.status_code == 201, release.get_json()
    assert move(client, staff, request_id, "fulfilled").get_json()["status"] == "fulfilled"
    assert move(client, staff, request_id, "in_progress").status_code == 409  # fulfilled is final
    events = client.get(f"/v1/requests/{request_id}/events", headers=bearer(tenant.api_key)).get_json()["items"]
    assert [e["status"] for e in events if e["type"] == "status_changed"][-4:] == [
        "in_progress", "on_hold", "in_progress", "fulfilled"]


def test_legal_review_is_forwarded_to_the_facility_queue(client, db, settings, staff):
    firm = make_tenant(db, "law_firm")
    body = request_body("lowell-general", pathway="subpoena")
    draft = client.post("/v1/requests", json=body, headers=bearer(firm.api_key)).get_json()
    for kind in ("subpoena", "court_order"):
        client.post(f"/v1/requests/{draft['id']}/documents", headers=bearer(firm.api_key),
                    content_type="multipart/form-data",
                    data={"kind": kind, "file": (io.BytesIO(samples.minimal_pdf()), f"{kind}.pdf")})
    assert client.post(f"/v1/requests/{draft['id']}/submit", headers=bearer(firm.api_key)).status_code == 202
    publish(db, settings)
    reviewing = client.get(f"/v1/requests/{draft['id']}", headers=staff).get_json()
    assert reviewing["routing"]["queue"] == "legal-review"
    queue = client.get("/v1/facilities/lowell-general/queue?queue=legal-review&limit=100", headers=staff).get_json()
    assert draft["id"] in [item["id"] for item in queue["items"]]
    forwarded = move(client, staff, draft["id"], "routed")
    assert forwarded.status_code == 200
    publish(db, settings)
    after = client.get(f"/v1/requests/{draft['id']}", headers=staff).get_json()
    assert after["routing"]["queue"] == "facility.lowell-general" and after["status"] == "routed"


def test_queue_filters_sort_and_search_over_the_api(client, db, settings, staff):
    tenant = make_tenant(db)
    me = staff
    mine, waiting = routed(client, db, settings, tenant), routed(client, db, settings, tenant,
                                                                 patient__last_name="Ibáñez")
    assert client.post(f"/v1/requests/{mine}/claim", headers=me).status_code == 200

    def ids(**query):  # every page: the suite's shared database may hold more than a page of unassigned requests
        url = "/v1/facilities/lowell-general/queue?" + urlencode({"limit": 100, **query})
        return [item["id"] for item in _whole_queue(client, me, url)]

    assert ids(assigned="me") == [mine]
    assert waiting in ids(assigned="nobody") and mine not in ids(assigned="nobody")
    assert ids(sort="-updated_at")[0] == mine  # the claim is the latest change
    item = client.get("/v1/facilities/lowell-general/queue", headers=me, query_string={"assigned": "me"}).get_json()
    assert item["items"][0]["updated_at"].endswith("Z") and item["items"][0]["due_today"] is False
    for bad in ({"assigned": "everyone"}, {"due": "soon"}, {"sort": "reference"}):
        assert client.get("/v1/facilities/lowell-general/queue", headers=me, query_string=bad).status_code == 422

    def search(body):
        return client.post("/v1/facilities/lowell-general/queue/search", headers=me, json=body)

    found = search({"text": "ibanez", "filters": {"assigned": "nobody"}, "limit": 100})
    assert found.status_code == 200 and waiting in [i["id"] for i in found.get_json()["items"]]
    assert search({"text": "ibanez", "filters": {"assigned": "me"}}).get_json() == {"items": [], "next_cursor": None}
    for bad in ({"text": "i"}, {"text": "x" * 101}, {"text": "ibanez", "filters": {"mine": True}},
                {"text": "ibanez", "page": 2}, {"filters": {}}, {"text": "ibanez", "cursor": "!!"}):
        response = search(bad)
        assert response.status_code in (400, 422), (bad, response.get_json())
    other_staff = sign_in(client, make_user(db, ["facility_staff"], ["tufts-mc"]))
    assert client.post("/v1/facilities/lowell-general/queue/search", headers=other_staff,
                       json={"text": "ibanez"}).status_code == 403
    dashboard = client.get("/v1/facilities/lowell-general/dashboard", headers=me)
    assert dashboard.status_code == 200
    body = dashboard.get_json()
    assert body["counts"]["in_progress"] >= 1 and "draft" not in body["counts"] and len(body["daily"]) == 30
    assert body["daily"][-1]["date"] == facility_today().isoformat() and body["daily"][-1]["arrivals"] >= 2
    assert client.get("/v1/facilities/lowell-general/dashboard", headers=other_staff).status_code == 403

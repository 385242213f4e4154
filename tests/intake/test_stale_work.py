"""Stale work closes itself (API.md v1.1 lifecycle), judged on a frozen clock.

The requests here are made with the machine's clock sent back to 2021 (time-machine), and the sweep runs on a
`FixedClock` a few weeks after that, with the machine's clock there too (so what the sweep writes is stamped
then).  Requests the rest of the suite makes today are younger than any sweep here, so none of them is touched.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from gateway.audit.models import AuditEvent
from gateway.clock import FixedClock, local
from gateway.intake import stale
from gateway.intake.models import RecordsRequest, RequestEvent
from gateway.mail.mailer import MemoryMailer
from gateway.mail.models import MailNotification
from gateway.mail.service import send
from gateway.outbox import OutboxMessage
from gateway.routing.dispatch import RecordingDispatcher
from gateway.routing.housekeeping import STALE_WORK_JOB, Housekeeping
from gateway.runtime import Runtime, install
from tests.factories import bearer, make_tenant, make_user, request_body, sign_in
from tests.intake.test_lifecycle_api import publish
from tests.routing.helpers import submitted

pytestmark = pytest.mark.date_sensitive

BOSTON = ZoneInfo("America/New_York")
# Monday 1 March 2021, 10:00 in Boston: day 0.
DAY0 = datetime(2021, 3, 1, 10, 0, tzinfo=BOSTON)
POLICY = stale.StalePolicy(draft_days=60, returned_days=30, warning_days=7)


@pytest.fixture
def firm(db):
    return make_tenant(db, "law_firm")


@contextlib.contextmanager
def on(day: date, at: time = time(9, 0)):
    """The machine's clock at `at` on `day` in Boston, and the gateway's clock the same."""
    moment = datetime.combine(day, at, tzinfo=BOSTON)
    # A UTC destination leaves the machine's own time zone as it is (`make test-dates` sets far ones).
    with time_machine.travel(moment.astimezone(UTC), tick=True):
        yield FixedClock(moment)


def sweep_on(db, day: date) -> stale.SweepResult:
    with on(day) as clock:
        return stale.sweep(db, clock=clock, policy=POLICY)


def draft(client, firm) -> str:
    with on(DAY0.date(), DAY0.time()):
        created = client.post("/v1/requests", headers=bearer(firm.api_key), json=request_body())
    assert created.status_code == 201, created.get_json()
    return created.get_json()["id"]


def facts(db, request_id: str) -> dict:
    with db.transaction() as session:
        req = session.get(RecordsRequest, request_id)
        events = session.scalars(select(RequestEvent).where(RequestEvent.request_id == request_id)
                                 .order_by(RequestEvent.id)).all()
        notes = session.scalars(select(OutboxMessage).where(OutboxMessage.request_id == request_id,
                                                            OutboxMessage.kind == "notify")
                                .order_by(OutboxMessage.id)).all()
        audit = session.scalars(select(AuditEvent.action).where(AuditEvent.object_id == request_id)).all()
        return {"status": req.status, "updated": local(req.updated_at, BOSTON).date(),
                "warnings": [e.detail for e in events if e.type == stale.WARNING],
                "last": events[-1], "events": [(n.payload["type"], n.payload["data"]) for n in notes],
                "audit": list(audit)}


def offsets(request_id: str, db, days) -> list:
    """Sweep once on each day after day 0 (in order); (day, what happened to this request) each time."""
    outcome = []
    for n in days:
        result = sweep_on(db, DAY0.date() + timedelta(days=n))
        outcome.append((n, "warned" if request_id in result.warned else "closed" if request_id in result.closed
                        else None))
    return outcome


def test_a_draft_is_warned_at_day_53_once_and_closed_at_day_60(client, db, firm):
    request_id = draft(client, firm)
    assert offsets(request_id, db, [1, 30, 52, 53, 53, 54, 59]) == [
        (1, None), (30, None), (52, None), (53, "warned"), (53, None), (54, None), (59, None)]
    state = facts(db, request_id)
    closes_on = str(DAY0.date() + timedelta(days=60))
    assert state["status"] == "draft" and state["warnings"] == [{"closes_on": closes_on}]
    assert ("request.stale_warning", {"request_id": request_id, "status": "draft", "closes_on": closes_on}) \
        in state["events"]
    assert offsets(request_id, db, [60]) == [(60, "closed")]
    state = facts(db, request_id)
    assert state["status"] == "cancelled"
    last = state["last"]
    assert (last.type, last.actor, last.detail) == ("status_changed", "gateway",
                                                    {"previous": "draft", "reasons": ["STALE_DRAFT"]})
    assert ("request.status_changed", {"request_id": request_id, "status": "cancelled", "previous_status": "draft",
                                       "occurred_at": last.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                       "reasons": ["STALE_DRAFT"]}) in state["events"]
    assert {"request.stale_warning", "request.cancelled"} <= set(state["audit"])
    # The requester sees why on the timeline.
    timeline = client.get(f"/v1/requests/{request_id}/events?limit=100", headers=bearer(firm.api_key)).get_json()
    assert [e["type"] for e in timeline["items"]][-2:] == ["stale_warning", "status_changed"]


def test_touching_the_draft_starts_the_period_again(client, db, firm):
    request_id = draft(client, firm)
    assert offsets(request_id, db, [53]) == [(53, "warned")]
    with on(DAY0.date() + timedelta(days=55)):  # the paralegal edits it after the warning
        edited = client.patch(f"/v1/requests/{request_id}", headers=bearer(firm.api_key),
                              json={"instructions": "Please include imaging"})
    assert edited.status_code == 200
    assert offsets(request_id, db, [60, 107, 108, 114]) == [(60, None), (107, None), (108, "warned"), (114, None)]
    assert facts(db, request_id)["warnings"][-1] == {"closes_on": str(DAY0.date() + timedelta(days=115))}
    assert offsets(request_id, db, [115]) == [(115, "closed")]


def test_a_draft_reaching_its_date_unwarned_gets_a_full_notice_first(client, db, firm):
    request_id = draft(client, firm)
    assert offsets(request_id, db, [75, 81]) == [(75, "warned"), (81, None)]  # the job did not run for weeks
    assert facts(db, request_id)["warnings"] == [{"closes_on": str(DAY0.date() + timedelta(days=82))}]
    assert offsets(request_id, db, [82]) == [(82, "closed")]


def test_a_returned_request_is_warned_at_day_23_and_closed_at_day_30(client, db, settings, firm):
    with on(DAY0.date(), DAY0.time()):
        request_id = submitted(client, firm, "tufts-mc", records__date_from="2019-01-01")
        publish(db, settings)
        clerk = sign_in(client, make_user(db, ["facility_staff"], ["tufts-mc"]))
        assert client.post(f"/v1/requests/{request_id}/claim", headers=clerk).status_code == 200
        returned = client.post(f"/v1/requests/{request_id}/transitions", headers=clerk,
                               json={"to": "returned", "reasons": ["INCOMPLETE"]})
        assert returned.status_code == 200
    assert offsets(request_id, db, [22, 23, 23, 29]) == [(22, None), (23, "warned"), (23, None), (29, None)]
    assert offsets(request_id, db, [30]) == [(30, "closed")]
    last = facts(db, request_id)["last"]
    assert (last.status, last.detail["reasons"]) == ("cancelled", ["RETURN_UNANSWERED"])


def test_the_requester_is_warned_by_email_with_the_date_and_no_patient_data(client, db, settings, firm):
    request_id = draft(client, firm)
    sweep_on(db, DAY0.date() + timedelta(days=53))
    with on(DAY0.date() + timedelta(days=53)) as clock:
        publish(db, settings)
        mailer = MemoryMailer()
        with db.transaction() as session:
            rows = session.scalars(select(MailNotification).where(MailNotification.request_id == request_id)).all()
        assert [r.event_type for r in rows] == ["request.stale_warning"] * 2  # the admin and the requester
        assert {send(db, r.id, mailer=mailer, settings=settings, now=clock.now()) for r in rows} == {"sent"}
    text = mailer.sent[0].get_content()
    assert "will be cancelled on April 30, 2021" in mailer.sent[0]["Subject"] + text
    assert "Ana" not in text and "Silva" not in text and "1980" not in text


def test_the_requesters_cancel_keeps_its_free_text_reason_and_no_code(client, db, firm):
    created = client.post("/v1/requests", headers=bearer(firm.api_key), json=request_body())
    request_id = created.get_json()["id"]
    cancelled = client.post(f"/v1/requests/{request_id}/cancel", headers=bearer(firm.api_key),
                            json={"reason": "Settled out of court"})
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"
    last = facts(db, request_id)["last"]
    assert last.detail == {"previous": "draft", "note": "Settled out of court"}


def test_the_daily_job_runs_on_the_worker_runtime_and_housekeeping_enqueues_it_once_a_day(db, settings, client,
                                                                                          firm):
    request_id = draft(client, firm)
    day53 = DAY0.date() + timedelta(days=53)
    with on(day53) as clock:
        previous = install(Runtime.from_settings(settings, db=db, clock=clock, mailer=MemoryMailer()))
        try:
            from gateway.intake.jobs import close_stale_work

            assert close_stale_work()["warned"] >= 1
        finally:
            install(previous)
    assert len(facts(db, request_id)["warnings"]) == 1

    dispatcher = RecordingDispatcher()
    calendar = FixedClock(datetime(2021, 3, 2, 4, 59, tzinfo=UTC))  # 23:59 on 1 March in Boston
    housekeeping = Housekeeping(settings, db, dispatcher, calendar=calendar)
    housekeeping.tick()
    housekeeping.tick()
    calendar.advance(minutes=2)  # midnight in Boston: a new day
    housekeeping.tick()
    stale_jobs = [(job[1], job[3]) for job in dispatcher.jobs if job[1] == STALE_WORK_JOB]
    assert stale_jobs == [(STALE_WORK_JOB, "stale-work-2021-03-01"), (STALE_WORK_JOB, "stale-work-2021-03-02")]

"""Notification e-mail through a real SMTP server (issue 14 "E-mail"): what the messages say (reference, status,
a portal link) and never say (patient name, date of birth, MRN, message text); who gets them (people of the
requesting organization who did not opt out, not the one who acted); retries through an outage; and the whole
path — the relay's fan-out writes the rows, housekeeping claims them, an RQ worker sends them."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

import pytest
from sqlalchemy import select

from gateway.auth.models import User
from gateway.db import utcnow
from gateway.mail import service
from gateway.mail.models import MailNotification
from gateway.mail.smtp import SmtpMailer
from gateway.routing.dispatch import RqDispatcher
from gateway.routing.housekeeping import Housekeeping
from tests.factories import bearer, make_tenant, make_user, sign_in
from tests.fixtures.live import settings_environment
from tests.intake.test_lifecycle_api import publish
from tests.routing.helpers import submitted

PATIENT = {"patient__first_name": "Zephyrine", "patient__last_name": "Quartermaine",
           "patient__date_of_birth": "1957-03-14", "patient__mrn": "MRN-778899",
           "authorization__signer_name": "Zephyrine Quartermaine"}
SECRET_MESSAGE = "Zephyrine's 1957 chart: page 2 is blurred"
FORBIDDEN = ("Zephyrine", "Quartermaine", "1957", "MRN-778899", "778899", "blurred", "page 2")


@pytest.fixture
def firm(db):
    return make_tenant(db, "law_firm")


@pytest.fixture
def clerk(client, db):
    return sign_in(client, make_user(db, ["facility_staff"], ["tufts-mc"]))


def rows_for(db, request_id: str) -> list[MailNotification]:
    with db.transaction() as session:
        return list(session.scalars(select(MailNotification).where(MailNotification.request_id == request_id)
                                    .order_by(MailNotification.created_at, MailNotification.id)))


def send_all(db, mail_settings, request_id: str, now=None) -> list[str]:
    """One attempt at each pending e-mail of the request, through the real SMTP mailer."""
    mailer = SmtpMailer.from_settings(mail_settings)
    return [service.send(db, row.id, mailer=mailer, settings=mail_settings, now=now or utcnow())
            for row in rows_for(db, request_id) if row.state == "pending"]


def email_of(db, user_id: str) -> str:
    with db.transaction() as session:
        return session.get(User, user_id).email


def text_of(caught) -> str:
    return f"{caught.message['Subject']}\n{caught.message.get_content()}"


def test_status_and_message_mails_say_reference_status_and_link_and_nothing_about_the_patient(
        client, db, settings, mail_settings, inbox, firm, clerk):
    requester = sign_in(client, firm.requester_email)
    assert client.patch("/v1/me", headers=requester, json={"email_notifications": False}).status_code == 200
    request_id = submitted(client, firm, "tufts-mc", **PATIENT)  # by the firm's API key: every person hears
    publish(db, settings)
    assert client.post(f"/v1/requests/{request_id}/claim", headers=clerk).status_code == 200
    assert client.post(f"/v1/requests/{request_id}/messages", headers=clerk,
                       json={"body": SECRET_MESSAGE}).status_code == 201
    assert client.post(f"/v1/requests/{request_id}/messages", headers=clerk,
                       json={"body": "internal: " + SECRET_MESSAGE, "internal": True}).status_code == 201
    publish(db, settings)
    assert set(send_all(db, mail_settings, request_id)) == {"sent"}

    reference = client.get(f"/v1/requests/{request_id}", headers=bearer(firm.api_key)).get_json()["reference"]
    admin = inbox.to(email_of(db, firm.admin_id))
    subjects = [m.message["Subject"] for m in admin]
    # submitted, then in progress (routed is not worth an e-mail), then the staff message; the note makes none.
    assert subjects == [f"Request {reference} is submitted", f"Request {reference} is in progress",
                        f"Request {reference}: a new message"]
    assert inbox.to(firm.requester_email) == []  # opted out
    link = f"https://records.example.test/portal/requests/{request_id}"
    for caught in admin:
        text = text_of(caught)
        assert reference in text and link in text and "Tufts Medical Center" in text
        assert "https://records.example.test/portal/account" in text
        assert caught.message["From"] == "Records <records@example.test>"
        assert caught.message["Auto-Submitted"] == "auto-generated"
        for fragment in FORBIDDEN:
            assert fragment not in caught.raw.decode(), fragment
    assert "now in progress" in text_of(admin[1])
    assert "a new message" in text_of(admin[2])
    # Only people get mail: the rows name users, one per (event, user), never an API key.
    rows = rows_for(db, request_id)
    assert {r.user_id for r in rows} == {firm.admin_id}
    assert len({(r.event_id, r.user_id) for r in rows}) == len(rows)


def test_nobody_is_mailed_about_what_they_did_themselves(client, db, settings, mail_settings, inbox, firm):
    request_id = submitted(client, firm, "tufts-mc")
    publish(db, settings)
    send_all(db, mail_settings, request_id)
    inbox.messages.clear()
    person = sign_in(client, firm.requester_email)
    assert client.post(f"/v1/requests/{request_id}/messages", headers=person,
                       json={"body": "A question for the records team"}).status_code == 201
    publish(db, settings)
    send_all(db, mail_settings, request_id)
    assert [m.message["Subject"].endswith("a new message") for m in inbox.to(email_of(db, firm.admin_id))] == [True]
    assert inbox.to(firm.requester_email) == []


def test_a_user_who_opts_out_before_the_mail_goes_gets_none(client, db, settings, mail_settings, inbox, firm):
    request_id = submitted(client, firm, "tufts-mc")
    publish(db, settings)
    admin = sign_in(client, firm.admin_email)
    me = client.get("/v1/me", headers=admin).get_json()
    assert me["email_notifications"] is True
    changed = client.patch("/v1/me", headers=admin, json={"email_notifications": False})
    assert changed.status_code == 200 and changed.get_json()["email_notifications"] is False
    states = {r.user_id: service.send(db, r.id, mailer=SmtpMailer.from_settings(mail_settings),
                                      settings=mail_settings, now=utcnow()) for r in rows_for(db, request_id)}
    assert states[firm.admin_id] == "skipped" and states[firm.requester_id] == "sent"
    assert inbox.to(firm.admin_email) == [] and len(inbox.to(firm.requester_email)) == 1
    # An API key has no e-mail preference.
    refused = client.patch("/v1/me", headers=bearer(firm.api_key), json={"email_notifications": True})
    assert refused.status_code == 403
    assert client.get("/v1/me", headers=bearer(firm.api_key)).get_json()["email_notifications"] is None
    assert client.patch("/v1/me", headers=admin, json={"email": "x"}).status_code == 422


def test_an_smtp_outage_is_retried_later_and_a_refused_recipient_is_not(client, db, settings, mail_settings, inbox,
                                                                         firm):
    request_id = submitted(client, firm, "tufts-mc")
    publish(db, settings)
    rows = {r.user_id: r for r in rows_for(db, request_id)}
    mailer = SmtpMailer.from_settings(mail_settings)
    now = utcnow()

    inbox.stop()  # the server is down: connection refused
    assert service.send(db, rows[firm.admin_id].id, mailer=mailer, settings=mail_settings, now=now) == "pending"
    down = rows_for(db, request_id)
    admin_row = next(r for r in down if r.user_id == firm.admin_id)
    assert (admin_row.attempts, admin_row.last_error) == (1, "ConnectionRefusedError")
    assert admin_row.next_attempt_at > now + timedelta(seconds=30)
    with db.transaction() as session:  # not handed out again before its time
        assert admin_row.id not in service.claim_due(session, now=now + timedelta(seconds=1), limit=1000,
                                                     lease=timedelta(minutes=5))
    inbox.start()
    inbox.reply = "451 4.3.0 Try again later"  # up, but busy: still a retry
    later = admin_row.next_attempt_at
    assert service.send(db, admin_row.id, mailer=mailer, settings=mail_settings, now=later) == "pending"
    inbox.reply = None
    with db.transaction() as session:
        row = session.get(MailNotification, admin_row.id)
        assert (row.attempts, row.last_error) == (2, "smtp_451")
        retry_at = row.next_attempt_at
        assert admin_row.id in service.claim_due(session, now=retry_at, limit=1000, lease=timedelta(minutes=5))
    assert service.send(db, admin_row.id, mailer=mailer, settings=mail_settings, now=retry_at) == "sent"
    assert len(inbox.to(firm.admin_email)) == 1
    assert service.send(db, admin_row.id, mailer=mailer, settings=mail_settings, now=retry_at) == "sent"
    assert len(inbox.to(firm.admin_email)) == 1  # a job run twice sends once

    inbox.refuse = "550 5.1.1 No such user"
    requester_row = rows[firm.requester_id]
    assert service.send(db, requester_row.id, mailer=mailer, settings=mail_settings, now=now) == "failed"


def test_three_days_of_outage_abandon_the_mail(db, client, settings, mail_settings, inbox, firm):
    request_id = submitted(client, firm, "tufts-mc")
    publish(db, settings)
    row = rows_for(db, request_id)[0]
    mailer = SmtpMailer.from_settings(mail_settings)
    inbox.stop()
    assert service.send(db, row.id, mailer=mailer, settings=mail_settings,
                        now=row.created_at + timedelta(days=1)) == "pending"
    assert service.send(db, row.id, mailer=mailer, settings=mail_settings,
                        now=row.created_at + timedelta(days=3)) == "abandoned"


def test_the_relay_housekeeping_and_an_rq_worker_send_the_mail(client, db, settings, mail_settings, inbox, firm,
                                                               clerk):
    """The production path: fan-out rows → housekeeping claim → `gateway.mail.jobs.send_all_job` in a real worker."""
    request_id = submitted(client, firm, "tufts-mc", **PATIENT)
    publish(db, settings)
    assert client.post(f"/v1/requests/{request_id}/messages", headers=clerk,
                       json={"body": SECRET_MESSAGE}).status_code == 201
    publish(db, settings)
    assert {r.state for r in rows_for(db, request_id)} == {"pending"}
    from gateway.adapters import build_redis

    Housekeeping(mail_settings, db, RqDispatcher(build_redis(settings))).tick()
    env = {**os.environ, **settings_environment(mail_settings)}
    worker = subprocess.run([str(Path(sys.executable).parent / "gateway"), "worker", "--maintenance", "--burst"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert worker.returncode == 0, worker.stderr[-2000:]
    assert {r.state for r in rows_for(db, request_id)} == {"sent"}, worker.stderr[-6000:]
    for address in (email_of(db, firm.admin_id), firm.requester_email):
        subjects = sorted(m.message["Subject"] for m in inbox.to(address))
        assert len(subjects) == 2 and any(s.endswith("a new message") for s in subjects), subjects
        for caught in inbox.to(address):
            assert not any(fragment in caught.raw.decode() for fragment in FORBIDDEN)
    # Nothing about the mail, the patient or the message is in the worker's log.
    assert "Zephyrine" not in worker.stderr + worker.stdout and "@" not in worker.stderr.replace("@localhost", "")


class CountingMailer(SmtpMailer):
    """The real SMTP mailer, counting the connections it opens."""

    opened: ClassVar[list[int]] = []

    def _connect(self):
        CountingMailer.opened.append(1)
        return super()._connect()


def test_a_batch_goes_over_one_connection_and_an_outage_is_learned_once(client, db, settings, mail_settings,
                                                                         inbox, firm, monkeypatch):
    ids = []
    for _ in range(3):
        request_id = submitted(client, firm, "tufts-mc")
        publish(db, settings)
        ids += [row.id for row in rows_for(db, request_id) if row.state == "pending"]
    assert len(ids) >= 3
    mailer = CountingMailer(**{f: getattr(SmtpMailer.from_settings(mail_settings), f)
                               for f in ("host", "port", "security", "user", "password", "timeout")})
    composed = []
    real_compose = service.compose
    monkeypatch.setattr(service, "compose", lambda **parts: composed.append(1) or real_compose(**parts))

    # Down: one connection attempt for the whole batch, nothing composed, every e-mail waits for its retry.
    CountingMailer.opened.clear()
    inbox.stop()
    now = utcnow()
    assert set(service.send_many(db, ids, mailer=mailer, settings=mail_settings, now=now).values()) == {"pending"}
    assert (len(CountingMailer.opened), composed) == (1, [])
    with db.transaction() as session:
        rows = session.scalars(select(MailNotification).where(MailNotification.id.in_(ids))).all()
        assert {(row.attempts, row.last_error) for row in rows} == {(1, "ConnectionRefusedError")}

    # Up: the batch is sent over one connection, each message whole and to its own recipient.
    inbox.start()
    CountingMailer.opened.clear()
    states = service.send_many(db, ids, mailer=mailer, settings=mail_settings, now=now + timedelta(hours=1))
    assert set(states.values()) == {"sent"}
    assert len(CountingMailer.opened) == 1 and len(composed) == len(ids)
    assert len(inbox.messages) == len(ids)
    assert all(len(caught.rcpt_tos) == 1 and caught.message["To"] == caught.rcpt_tos[0] for caught in inbox.messages)


def test_a_refused_recipient_in_a_batch_does_not_stop_the_others(client, db, settings, mail_settings, inbox, firm):
    request_id = submitted(client, firm, "tufts-mc")
    publish(db, settings)
    rows = {r.user_id: r for r in rows_for(db, request_id)}
    refused, accepted = rows[firm.admin_id], rows[firm.requester_id]
    CountingMailer.opened.clear()
    mailer = CountingMailer(**{f: getattr(SmtpMailer.from_settings(mail_settings), f)
                               for f in ("host", "port", "security", "user", "password", "timeout")})
    inbox.refuse, inbox.refuse_only = "550 5.1.1 No such user", firm.admin_email
    try:
        states = service.send_many(db, [refused.id, accepted.id], mailer=mailer, settings=mail_settings,
                                   now=utcnow())
    finally:
        inbox.refuse = inbox.refuse_only = None
    assert states == {refused.id: "failed", accepted.id: "sent"}
    assert len(CountingMailer.opened) == 1
    assert inbox.to(firm.admin_email) == [] and len(inbox.to(firm.requester_email)) == 1


def _mail_due(client, db, settings, firm) -> tuple[set[str], list, object]:
    """A submitted request's notification e-mails, due; and a dispatcher recording what housekeeping enqueues
    (into the list returned beside it) instead of sending it to RQ."""
    request_id = submitted(client, firm, "tufts-mc")
    publish(db, settings)
    ours = {row.id for row in rows_for(db, request_id)}
    assert len(ours) >= 2
    jobs: list = []

    class RecordingDispatcher:
        def enqueue(self, queue, function, args, **options):
            jobs.append((function, args))

    return ours, jobs, RecordingDispatcher()


def test_housekeeping_hands_claimed_mail_to_workers_in_small_jobs(client, db, settings, mail_settings, firm,
                                                                 monkeypatch):
    """A worker takes route jobs first only between jobs: one job for a large batch of e-mails would keep it
    from hand-overs for as long as the batch takes."""
    from gateway.routing import housekeeping

    ours, jobs, dispatcher = _mail_due(client, db, settings, firm)
    monkeypatch.setattr(housekeeping, "MAIL_JOB_SIZE", 1)
    Housekeeping(mail_settings, db, dispatcher).tick()
    mail_jobs = [args[0] for function, args in jobs if function == "gateway.mail.jobs.send_all_job"]
    assert all(len(ids) == 1 for ids in mail_jobs)
    assert ours <= {notification_id for ids in mail_jobs for notification_id in ids}


def test_a_full_claim_comes_back_at_the_next_tick_not_a_second_later(client, db, settings, mail_settings, firm,
                                                                     monkeypatch):
    """Housekeeping claimed at most 100 e-mails (and 100 webhook deliveries) a second, so at a busy hour's
    rate the backlog grew without end (bench.load at 50 submissions/s left 508 e-mails waiting).  A claim that
    comes back full is tried again at the next tick; the clock here never moves."""
    from gateway.routing import housekeeping

    ours, jobs, dispatcher = _mail_due(client, db, settings, firm)

    def mail_ids() -> set[str]:
        return {i for function, args in jobs if function == "gateway.mail.jobs.send_all_job" for i in args[0]}

    monkeypatch.setattr(housekeeping, "CLAIM_LIMIT", 1)
    keeper = Housekeeping(mail_settings, db, dispatcher, clock=lambda: 1000.0)
    for _ in range(1000):  # every e-mail due in the shared database, one a tick, without the clock moving
        before = len(mail_ids())
        keeper.tick()
        if len(mail_ids()) == before:
            break
    assert ours <= mail_ids()

"""A stateful property test of the request lifecycle (issue 12), on SQLite and PostgreSQL with the real services.

Hypothesis drives random sequences of requester, staff and relay actions on one request per example — edits,
submits, cancels, relay passes, claims, unclaims, release uploads and withdrawals, transitions, revocations,
invoices (charged or waived), payments (right or wrong amounts) and disputes — and after every step checks,
against the database and the API:
- a release is visible to the requester if and only if the request is fulfilled;
- every observed status change is an edge of the lifecycle's state machine;
- `version` never goes down, and goes up with every accepted change;
- each status change has exactly one timeline event and one audit entry;
- (issue 14) a request is fulfilled only with no invoice due, it awaits payment only with an invoice, an
  invoice is paid exactly when one payment of its amount is recorded, and every fulfilled request has
  exactly one disclosure record (none otherwise).
"""

from __future__ import annotations

import io
import itertools
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select

from gateway.adapters import build_redis
from gateway.audit.models import AuditEvent
from gateway.intake.lifecycle import EDGES
from gateway.intake.models import STATUSES, RecordsRequest, RequestEvent
from gateway.intake.release_models import Disclosure, Invoice, Payment
from gateway.routing import relay
from gateway.routing.dispatch import RqDispatcher
from tests import samples
from tests.factories import bearer, make_tenant, make_user, request_body, sign_in

EXAMPLES, STEPS = 50, 30
STATUS_ACTIONS = [f"request.{status}" for status in STATUSES]
_patients = itertools.count()
RUNS: dict[str, dict] = {}


class Env:
    """The fixtures one test run hands to its machines."""

    client = db = app_settings = firm = clerk = requester = database = None


class LifecycleMachine(RuleBasedStateMachine):
    """One request, worked by a requester, a clerk and the relay in random order."""

    @initialize(destructive=st.booleans(), charged=st.booleans())
    def create(self, destructive, charged):
        # Half the examples never cancel or revoke, so they get deep into the lifecycle (claims, releases).
        self.destructive = destructive
        # Half of them, left to themselves, invoice the records and release them on payment (issue 14).
        self.charged = charged
        # A birth date of its own per example, so a revocation here touches no other example's request.
        self.dob = str(date(1940, 1, 1) + timedelta(days=next(_patients)))
        body = request_body("tufts-mc", patient__date_of_birth=self.dob)
        response = Env.client.post("/v1/requests", json=body, headers=Env.requester)
        assert response.status_code == 201, response.get_json()
        self.id = response.get_json()["id"]
        uploaded = Env.client.post(f"/v1/requests/{self.id}/documents", headers=Env.requester,
                                   content_type="multipart/form-data",
                                   data={"kind": "authorization", "file": (io.BytesIO(samples.minimal_pdf()), "a.pdf")})
        assert uploaded.status_code == 201
        self.status, self.version, self.changes = "draft", self._row().version, 0
        self.releases: list[str] = []
        RUNS[Env.database]["examples"] += 1

    def _row(self) -> RecordsRequest:
        with Env.db.transaction() as session:
            return session.get(RecordsRequest, self.id)

    def _act(self, response, *, changes: bool = True) -> None:
        """After an action: no 5xx, and an accepted change raised the version."""
        RUNS[Env.database]["steps"] += 1
        assert response.status_code < 500, response.get_data(as_text=True)[:500]
        row = self._row()
        assert row.version >= self.version
        if changes and 200 <= response.status_code < 300 and response.status_code != 204:
            assert row.version > self.version or response.get_json().get("version") == self.version
        elif response.status_code == 204:
            assert row.version > self.version
        if row.status != self.status:
            assert row.status in EDGES.get(self.status, ()), f"{self.status} → {row.status} is not an edge"
            self.changes += 1
            RUNS[Env.database]["edges"].add(f"{self.status}→{row.status}")
        self.status, self.version = row.status, row.version

    def _post(self, path: str, headers, json=None):
        return Env.client.post(f"/v1/requests/{self.id}{path}", headers=headers, json=json)

    @rule(text=st.sampled_from(["Please include imaging", "Urgent: trial date set", ""]))
    def edit(self, text):
        self._act(Env.client.patch(f"/v1/requests/{self.id}", headers=Env.requester,
                                   json={"instructions": text or None}))

    @rule()
    def submit(self):
        self._act(self._post("/submit", Env.requester))

    @precondition(lambda self: self.destructive)
    @rule()
    def cancel(self):
        self._act(self._post("/cancel", Env.requester, {"reason": "no longer needed"}))

    @rule()
    def relay_pass(self):
        dispatcher = RqDispatcher(build_redis(Env.app_settings))
        relay.publish_due(Env.db, dispatcher, batch=500)
        RUNS[Env.database]["steps"] += 1
        row = self._row()
        if row.status != self.status:
            assert row.status in EDGES.get(self.status, ()), f"{self.status} → {row.status} is not an edge"
            self.changes += 1
            RUNS[Env.database]["edges"].add(f"{self.status}→{row.status}")
        assert row.version >= self.version
        self.status, self.version = row.status, row.version

    @rule()
    def claim(self):
        self._act(self._post("/claim", Env.clerk))

    @rule(to=st.sampled_from(["routed", "on_hold", "in_progress", "returned", "denied", "fulfilled"]))
    def transition(self, to):
        reasons = ["OTHER"] if to in ("returned", "denied", "on_hold") else []
        self._act(self._post("/transitions", Env.clerk, {"to": to, "reasons": reasons}))

    @rule()
    def upload_release(self):
        response = Env.client.post(f"/v1/requests/{self.id}/documents", headers=Env.clerk,
                                   content_type="multipart/form-data",
                                   data={"kind": "release", "file": (io.BytesIO(samples.minimal_pdf(pages=2)),
                                                                     "r.pdf")})
        if response.status_code == 201:
            self.releases.append(response.get_json()["id"])
        self._act(response)

    @rule()
    def withdraw_release(self):
        if not self.releases:
            return
        document_id = self.releases[-1]
        response = Env.client.delete(f"/v1/requests/{self.id}/documents/{document_id}", headers=Env.clerk)
        if response.status_code == 204:
            self.releases.remove(document_id)
        else:
            assert response.status_code in (404, 409), response.get_data(as_text=True)
        self._act(response)

    @rule(pages=st.sampled_from([0, 40, 312]), waive=st.booleans())
    def issue_invoice(self, pages, waive):
        body = {"pages": pages, "waive": waive, "waiver_reason": "hardship" if waive else None}
        self._act(self._post("/invoice", Env.clerk, body))

    def _amount_due(self) -> str | None:
        with Env.db.transaction() as session:
            invoice = session.scalars(select(Invoice).where(Invoice.request_id == self.id)).one_or_none()
            return invoice.amount if invoice is not None and invoice.status == "due" else None

    def _invoiced(self) -> bool:
        with Env.db.transaction() as session:
            return session.scalars(select(Invoice.id).where(Invoice.request_id == self.id)).first() is not None

    @rule(right=st.booleans())
    def pay(self, right):
        due = self._amount_due() or "28.69"
        amount = due if right else "1.00"
        response = self._post("/payments", Env.clerk, {"method": "check", "reference": "CHK-1", "amount": amount})
        assert response.status_code in (201, 404, 409, 422), response.get_data(as_text=True)[:500]
        self._act(response)

    @rule()
    def dispute(self):
        self._act(self._post("/invoice/dispute", Env.requester, {"note": "Too many pages counted"}))

    @precondition(lambda self: self.destructive)
    @rule()
    def revoke(self):
        response = Env.client.post("/v1/revocations", headers=Env.clerk, json={
            "patient": {"first_name": "Ana", "last_name": "Silva", "date_of_birth": self.dob},
            "recipient": "Smith & Jones LLP", "effective_on": "2099-12-31"})
        assert response.status_code == 201
        self._act(response, changes=False)

    def _advance(self):
        """The natural next step from where the request is (so random runs also reach release)."""
        step = {"draft": self.submit, "returned": self.submit, "submitted": self.relay_pass,
                "routed": self.claim}.get(self.status)
        if step is not None:
            step()
        elif self.status in ("in_progress", "awaiting_payment"):
            if self._amount_due() is not None:
                self.pay(right=True)
            elif self.releases and self.charged and self.status == "in_progress" and not self._invoiced():
                self.issue_invoice(pages=40, waive=False)
            elif self.releases:
                self.transition("fulfilled")
            else:
                self.upload_release()
        elif self.status == "on_hold":
            self.transition("returned" if self._row().hold_reason else "in_progress")

    @rule()
    def advance(self):
        self._advance()

    @rule()
    def advance_again(self):
        self._advance()

    @invariant()
    def a_release_is_visible_to_the_requester_iff_fulfilled(self):
        if not hasattr(self, "id"):
            return
        response = Env.client.get(f"/v1/requests/{self.id}", headers=Env.requester)
        assert response.status_code == 200, response.get_json()
        resource = response.get_json()
        visible = [d["id"] for d in resource["documents"] if d["kind"] == "release"]
        if resource["status"] == "fulfilled":
            assert sorted(visible) == sorted(self.releases)
        else:
            assert visible == []
            for document_id in self.releases:
                assert Env.client.get(f"/v1/requests/{self.id}/documents/{document_id}/content",
                                      headers=Env.requester).status_code == 404

    @invariant()
    def invoices_payments_and_disclosures_agree_with_the_status(self):
        if not hasattr(self, "id"):
            return
        with Env.db.transaction() as session:
            status = session.get(RecordsRequest, self.id).status
            invoice = session.scalars(select(Invoice).where(Invoice.request_id == self.id)).one_or_none()
            payments = session.scalars(select(Payment).where(Payment.request_id == self.id)).all()
            disclosures = session.scalars(select(Disclosure).where(Disclosure.request_id == self.id)).all()
        if status == "fulfilled":
            assert invoice is None or invoice.status != "due"
        if status == "awaiting_payment":
            assert invoice is not None and invoice.status in ("due", "paid")
        paid = invoice is not None and invoice.status == "paid"
        assert len(payments) == (1 if paid else 0)
        if paid:
            assert payments[0].amount_cents == invoice.amount_cents
        assert len(disclosures) == (1 if status == "fulfilled" else 0)
        if disclosures:
            assert sorted(d["id"] for d in disclosures[0].documents) == sorted(self.releases)

    @invariant()
    def each_status_change_has_one_event_and_one_audit_entry(self):
        if not hasattr(self, "id"):
            return
        with Env.db.transaction() as session:
            events = [e for e in session.scalars(select(RequestEvent).where(RequestEvent.request_id == self.id))
                      if "previous" in (e.detail or {})]
            audits = session.scalar(select(func.count()).select_from(AuditEvent).where(
                AuditEvent.object_id == self.id, AuditEvent.action.in_(STATUS_ACTIONS)))
        assert len(events) == audits == self.changes
        for event in events:  # each recorded change is itself an edge
            assert event.status in EDGES.get(event.detail["previous"], ()), (event.detail["previous"], event.status)


@pytest.mark.slow
def test_random_sequences_of_calls_keep_the_lifecycle_invariants(settings, database_url):
    import dataclasses

    from gateway.app import create_app

    # Thousands of calls from one key and one clerk within a minute: the per-principal limit is raised.
    app = create_app(dataclasses.replace(settings, api_rate_limit="1000000 per minute"))
    client, db = app.test_client(), app.extensions["gateway"].db
    Env.client, Env.db, Env.app_settings = client, db, settings
    Env.database = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    Env.firm = make_tenant(db, "law_firm")
    Env.requester = bearer(Env.firm.api_key)
    Env.clerk = sign_in(client, make_user(db, ["facility_staff"], ["tufts-mc"]))
    RUNS[Env.database] = {"examples": 0, "steps": 0, "edges": set()}
    run_state_machine_as_test(LifecycleMachine, settings=settings_for_machine())
    print(f"lifecycle state machine on {Env.database}: {RUNS[Env.database]['examples']} examples, "
          f"{RUNS[Env.database]['steps']} steps; edges taken: {sorted(RUNS[Env.database]['edges'])}")


def settings_for_machine():
    return settings(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], database=None)

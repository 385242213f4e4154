"""The accounting of disclosures (45 CFR 164.528): one record per release, and the search a patient's demand needs.

`record_disclosure` is called by `lifecycle.fulfil` inside the release's own transaction, so a request
never reaches `fulfilled` without its disclosure record, whatever path released it (a transition, a
payment, a zero-amount invoice).  `accountable` is true for releases under legal process (a subpoena or
a court order, 164.512(e)), which a patient's accounting must list; releases under the patient's own
authorization (164.508) are recorded too but exempt (164.528(a)(1)(iv)).

The patient's identity stays on the record only so that it can be found: the date of birth and the
names as the release rules compare them (`rules.names.normalize_name`), including former names.  The
search takes them in a POST body, never in a URL; it is audited as a read of PHI, and neither the
audit entry nor any log names the patient.  An accounting covers at most six years back (164.528(a)(1)).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import false, select, true
from sqlalchemy.orm import Session

from gateway.audit.service import record
from gateway.auth.models import Organization
from gateway.auth.principal import Principal
from gateway.auth.tenancy import tenant_rule, visible_select
from gateway.db import utcnow
from gateway.errors import FieldError, Unprocessable
from gateway.intake.models import Document, RecordsRequest
from gateway.intake.release_models import Disclosure, DisclosureName
from gateway.intake.rules.names import normalize_name
from gateway.pagination import keyset_page

# Legal process without the patient's authorization: these releases belong in the patient's accounting.
ACCOUNTABLE_PATHWAYS = frozenset({"subpoena", "court_order"})
LOOKBACK_YEARS = 6
_LEGAL_BASIS = {
    "subpoena": "In response to a subpoena (45 CFR 164.512(e)(1)(ii))",
    "court_order": "In response to a court order (45 CFR 164.512(e)(1)(i))",
}
_NAME_KEY_LENGTH = 210


@tenant_rule(Disclosure)
def _disclosures(principal: Principal):
    # Compliance reads every facility's accounting; a records team reads its own facilities'; nobody else.
    if principal.has_role("auditor"):
        return true()
    if principal.has_role("facility_staff") and principal.facilities:
        return Disclosure.facility.in_(sorted(principal.facilities))
    return false()


def person_key(first_name: object, last_name: object) -> str:
    """The search key of a person's name: first and last name each normalized ("" if either is blank)."""
    first, last = normalize_name(first_name), normalize_name(last_name)
    return f"{first} {last}"[:_NAME_KEY_LENGTH] if first and last else ""


def name_keys(patient: dict) -> set[str]:
    """Every key the patient of a request can be found by: the request's name and each former name."""
    keys = {person_key(patient.get("first_name"), patient.get("last_name"))}
    keys.update(normalize_name(other)[:_NAME_KEY_LENGTH] for other in patient.get("other_names") or ())
    keys.discard("")
    return keys


def search_keys(first_name: str, last_name: str) -> set[str]:
    """The keys a search for this name matches: the name as parts, and as one full name (a former name)."""
    keys = {person_key(first_name, last_name), normalize_name(f"{first_name} {last_name}")[:_NAME_KEY_LENGTH]}
    keys.discard("")
    return keys


def _date(value) -> date | None:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _words(code: str) -> str:
    return code.replace("_", " ")


def description_of(req: RecordsRequest) -> str:
    """A brief description of the information released (164.528(b)(2)(iii)), from what the request named."""
    records = req.records or {}
    types = ", ".join(_words(t) for t in records.get("types") or ()) or "records"
    text = types[0].upper() + types[1:]
    start, end = records.get("date_from"), records.get("date_to")
    if start or end:
        text += f", {start or 'earliest'} to {end or 'latest'}"
    sensitive = records.get("sensitive") or ()
    if sensitive:
        text += "; including " + ", ".join(_words(s) for s in sensitive) + " information"
    return text


def purpose_statement_of(req: RecordsRequest) -> str:
    """A brief statement of the purpose (164.528(b)(2)(iv)): the authorization's own, or the legal process."""
    purpose = _words(req.purpose or "")
    if req.pathway in _LEGAL_BASIS:
        return f"{_LEGAL_BASIS[req.pathway]}; purpose: {purpose}"
    stated = (req.authorization or {}).get("purpose_statement")
    return stated or f"Patient authorization (45 CFR 164.508); purpose: {purpose}"


def recipient_of(session: Session, req: RecordsRequest) -> dict:
    """Who received the records (164.528(b)(2)(ii)): the delivery recipient, else the authorization's, else
    the requesting organization."""
    delivered_to = (req.delivery or {}).get("recipient") or {}
    name = delivered_to.get("name") or (req.authorization or {}).get("recipient")
    if not name:
        org = session.get(Organization, req.org_id)
        name = org.name if org else None
    return {"name": name, "address": delivered_to.get("address")}


def record_disclosure(session: Session, req: RecordsRequest, releases: list[Document], *, actor: str,
                      audit_ctx: dict, org_id: str | None = None) -> Disclosure:
    """Write the disclosure record of a release, in the releasing transaction (called by `lifecycle.fulfil`)."""
    patient = req.patient or {}
    disclosure = Disclosure(
        request_id=req.id, disclosed_at=utcnow(), disclosed_by=actor, facility=req.facility, org_id=req.org_id,
        pathway=req.pathway, purpose=req.purpose, recipient=recipient_of(session, req),
        description=description_of(req), purpose_statement=purpose_statement_of(req),
        documents=[{"id": d.id, "sha256": d.sha256, "pages": d.pages} for d in releases],
        accountable=req.pathway in ACCOUNTABLE_PATHWAYS, patient_date_of_birth=_date(patient.get("date_of_birth")))
    session.add(disclosure)
    session.flush()
    session.add_all(DisclosureName(disclosure_id=disclosure.id, name_key=key) for key in sorted(name_keys(patient)))
    record(session, actor=actor, org_id=org_id, action="disclosure.record", object_type="disclosure",
           object_id=disclosure.id, **audit_ctx)
    return disclosure


def lookback_floor(today: date) -> date:
    """The earliest day an accounting covers: six years before today (29 February counts from 1 March)."""
    try:
        return today.replace(year=today.year - LOOKBACK_YEARS)
    except ValueError:
        return date(today.year - LOOKBACK_YEARS, 3, 1)


def window(*, since: date | None, until: date | None, today: date) -> tuple[date, date]:
    """The days searched: `from` (at most six years back) through `to` (default today); 422 if reversed."""
    if since and until and until < since:
        raise Unprocessable("`to` is before `from`.", code="DATE_RANGE_INVALID",
                            errors=[FieldError("DATE_RANGE_INVALID", "to", "must not be before `from`")])
    floor = lookback_floor(today)
    return max(since or floor, floor), until or today


def _instant(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)


def search(session: Session, principal: Principal, *, first_name: str, last_name: str, date_of_birth: date,
           since: date | None, until: date | None, include_exempt: bool, today: date, timezone: ZoneInfo,
           limit: int, cursor: str | None):
    """The patient's disclosures the principal may see, newest first; returns (items, next_cursor, (from, to)).

    Days are the facilities' calendar days: `to` includes the whole of that day in Boston.
    """
    start, end = window(since=since, until=until, today=today)
    keys = search_keys(first_name, last_name)
    query = visible_select(principal, Disclosure).where(
        Disclosure.patient_date_of_birth == date_of_birth,
        Disclosure.disclosed_at >= _instant(start, timezone),
        Disclosure.disclosed_at < _instant(end + timedelta(days=1), timezone),
        Disclosure.id.in_(select(DisclosureName.disclosure_id).where(DisclosureName.name_key.in_(sorted(keys)))))
    if not include_exempt:
        query = query.where(Disclosure.accountable.is_(True))
    if not keys or end < start:
        query = query.where(false())
    items, next_cursor = keyset_page(session, query, columns=[Disclosure.disclosed_at, Disclosure.id],
                                     limit=limit, cursor=cursor, descending=True)
    return items, next_cursor, (start, end)

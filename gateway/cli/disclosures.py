"""`gateway disclosures export`: a patient's accounting of disclosures (45 CFR 164.528) as JSON or CSV."""

from __future__ import annotations

import csv
import io

import click

from gateway.cli import emit, json_option, main, pass_context

CSV_COLUMNS = ("disclosed_at", "facility", "pathway", "accountable", "recipient_name", "recipient_address",
               "description", "purpose_statement", "documents", "request_id", "id")
_DAY = click.DateTime(formats=["%Y-%m-%d"])


@main.group()
def disclosures():
    """The accounting of disclosures."""


def _actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"[:80]
    except Exception:
        return "cli:unknown"


def _csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        recipient = row.get("recipient") or {}
        documents = ";".join(f"{d['id']}:{d['sha256']}:{d.get('pages') or ''}" for d in row["documents"])
        writer.writerow([row["disclosed_at"], row["facility"], row["pathway"], str(row["accountable"]).lower(),
                         recipient.get("name") or "", recipient.get("address") or "", row["description"],
                         row["purpose_statement"], documents, row["request_id"], row["id"]])
    return out.getvalue().rstrip("\n")


def _human(rows: list[dict], since, until) -> str:
    lines = [f"{len(rows)} disclosure(s) from {since} to {until}"]
    for row in rows:
        recipient = (row.get("recipient") or {}).get("name") or "unknown recipient"
        kind = "accountable" if row["accountable"] else "exempt"
        lines.append(f"{row['disclosed_at']}  {row['facility']}  {row['pathway']} ({kind})  to {recipient}: "
                     f"{row['description']} — {row['purpose_statement']}")
    return "\n".join(lines)


@disclosures.command("export")
@click.option("--first-name", required=True, help="The patient's first name.")
@click.option("--last-name", required=True, help="The patient's last name.")
@click.option("--dob", required=True, type=_DAY, help="The patient's date of birth, YYYY-MM-DD.")
@click.option("--from", "since", type=_DAY, help="First day (default, and at most, six years back).")
@click.option("--to", "until", type=_DAY, help="Last day, included (default today).")
@click.option("--include-exempt", is_flag=True, help="Also releases under the patient's authorization (exempt).")
@click.option("--csv", "as_csv", is_flag=True, help="CSV output (one row per disclosure).")
@json_option
@pass_context
def disclosures_export(ctx, first_name, last_name, dob, since, until, include_exempt, as_csv, as_json):
    """A patient's disclosures over six years at most, newest first, every facility (audited, naming no one)."""
    from gateway.audit.service import record
    from gateway.auth.principal import Principal
    from gateway.clock import SystemClock
    from gateway.intake import disclosures as service
    from gateway.intake.release_schemas import DisclosureSchema

    clock = SystemClock.from_settings(ctx.settings)
    # The operator has the database; the guard sees them as compliance does: every facility.
    actor = _actor()
    principal = Principal(kind="cli", id=actor.split(":", 1)[1], org_id=None, org_kind=None,
                          roles=frozenset({"auditor"}))
    rows, cursor = [], None
    with ctx.db.transaction() as session:
        while True:
            items, cursor, (first, last) = service.search(
                session, principal, first_name=first_name, last_name=last_name, date_of_birth=dob.date(),
                since=since.date() if since else None, until=until.date() if until else None,
                include_exempt=include_exempt, today=clock.today(), timezone=clock.timezone, limit=100,
                cursor=cursor)
            rows.extend(DisclosureSchema().dump(d.to_resource()) for d in items)
            if cursor is None:
                break
        record(session, actor=actor, action="disclosure.export", object_type="disclosure", object_id=None)
    if as_csv:
        click.echo(_csv(rows))
        return
    emit({"from": first, "to": last, "items": rows}, as_json, _human(rows, first, last))

"""`gateway fhir-clients create|list|revoke`: SMART Backend Services clients of an organization."""

from __future__ import annotations

import json

import click

from gateway.cli import emit, fail, json_option, main, pass_context


@main.group("fhir-clients")
def fhir_clients():
    """FHIR API clients (SMART Backend Services), registered per organization."""


@fhir_clients.command("create")
@click.option("--org", "org_id", required=True, help="The organization the client acts for.")
@click.option("--jwks-file", type=click.Path(exists=True, dir_okay=False), help="Its public keys (a JWKS).")
@click.option("--jwks-url", help="Where its public keys are published (fetched, SSRF-checked, cached).")
@click.option("--name", help="A label for operators.")
@json_option
@pass_context
def create(ctx, org_id, jwks_file, jwks_url, name, as_json):
    """Register a client; prints its client id (the assertion's iss and sub)."""
    from gateway.fhir import smart

    if bool(jwks_file) == bool(jwks_url):
        fail("give exactly one of --jwks-file and --jwks-url", as_json, code="USAGE")
    jwks = None
    if jwks_file:
        try:
            with open(jwks_file, encoding="utf-8") as handle:
                jwks = json.load(handle)
        except (OSError, ValueError) as error:
            fail(f"cannot read the JWKS file: {type(error).__name__}", as_json, code="JWKS_INVALID")
    else:
        from gateway.fhir.jwks import fetch_jwks

        try:
            jwks = fetch_jwks(jwks_url, allow_private=ctx.settings.webhook_allow_private)
        except ValueError as error:
            fail(f"cannot use the JWKS URL: {error}", as_json, code="JWKS_INVALID")
    try:
        client = smart.register_client(ctx.db, org_id=org_id, jwks=jwks, jwks_url=jwks_url, name=name)
    except ValueError as error:
        fail(str(error), as_json, code="INVALID")
    emit({"client_id": client.id, "org_id": client.org_id, "scopes": client.scopes}, as_json,
         f"client {client.id} registered for organization {client.org_id}")


@fhir_clients.command("list")
@click.option("--org", "org_id", help="Only this organization's clients.")
@json_option
@pass_context
def list_clients(ctx, org_id, as_json):
    """Registered clients (no keys printed)."""
    from sqlalchemy import select

    from gateway.fhir.models import FhirClient

    with ctx.db.transaction() as session:
        query = select(FhirClient).order_by(FhirClient.created_at)
        if org_id:
            query = query.where(FhirClient.org_id == org_id)
        rows = [{"client_id": c.id, "org_id": c.org_id, "name": c.name, "jwks_url": c.jwks_url,
                 "revoked": c.revoked_at is not None} for c in session.scalars(query)]
    emit(rows, as_json, "\n".join(f"{r['client_id']}  {r['org_id']}  {'revoked' if r['revoked'] else 'active'}"
                                  for r in rows) or "no clients")


@fhir_clients.command("revoke")
@click.argument("client_id")
@json_option
@pass_context
def revoke(ctx, client_id, as_json):
    """Revoke a client: its tokens stop working at once."""
    from gateway.fhir import smart

    if not smart.revoke_client(ctx.db, client_id):
        fail("no active client with this id", as_json, code="NOT_FOUND")
    emit({"client_id": client_id, "revoked": True}, as_json, f"client {client_id} revoked")

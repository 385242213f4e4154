"""The two PostgreSQL roles: the owner runs migrations, the application role only reads and writes rows.

The owner (the role `gateway db upgrade` connects as) owns every table and
trigger.  The application role (in GATEWAY_DATABASE_URL of the web workers,
the relay and RQ workers) gets exactly:

- SELECT, INSERT, UPDATE, DELETE on the domain tables;
- SELECT, INSERT on `audit_events` — never UPDATE, DELETE or TRUNCATE, and as it
  owns nothing it cannot drop or disable the triggers that refuse them anyway;
- SELECT, UPDATE on `audit_chain_head` (the append lock and its cached head);
- SELECT on `alembic_version`; USAGE and SELECT on the sequences.

Granting is idempotent: run it again after every `gateway db upgrade`, so
tables added by a migration are covered.  SQLite has no roles.
"""

from __future__ import annotations

import re

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
AUDIT_GRANTS = {"audit_events": "SELECT, INSERT", "audit_chain_head": "SELECT, UPDATE",
                "alembic_version": "SELECT"}
DOMAIN_GRANT = "SELECT, INSERT, UPDATE, DELETE"


class RoleError(ValueError):
    """The role cannot serve as the application role (or the database has no roles)."""


def _quote(connection: Connection, name: str) -> str:
    return connection.dialect.identifier_preparer.quote(name)


def app_role_statements(connection: Connection, role: str) -> list[str]:
    """The GRANT/REVOKE statements that give `role` exactly the application's privileges."""
    if connection.dialect.name != "postgresql":
        raise RoleError("roles exist only on PostgreSQL; on SQLite the database file's permissions decide")
    if not ROLE_NAME.fullmatch(role):
        raise RoleError("role names are lowercase letters, digits and underscores")
    found = connection.execute(text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = :r"),
                               {"r": role}).one_or_none()
    if found is None:
        raise RoleError(f"role {role} does not exist (CREATE ROLE {role} LOGIN PASSWORD '...')")
    if found.rolsuper:
        raise RoleError(f"role {role} is a superuser, which no grant or revoke restrains")
    owner = connection.execute(text("SELECT tableowner FROM pg_tables WHERE schemaname = 'public' "
                                    "AND tablename = 'audit_events'")).scalar_one_or_none()
    if owner is None:
        raise RoleError("the schema is not migrated (run `gateway db upgrade` as the owner first)")
    if owner == role:
        raise RoleError(f"role {role} owns the tables; the application needs a role of its own")
    quoted = _quote(connection, role)
    tables = sorted(inspect(connection).get_table_names(schema="public"))
    statements = [f"GRANT USAGE ON SCHEMA public TO {quoted}"]
    for table in tables:
        # Revoke first, so a second run also takes back anything granted by hand since.
        statements.append(f"REVOKE ALL ON TABLE public.{_quote(connection, table)} FROM {quoted}")
        statements.append(f"GRANT {AUDIT_GRANTS.get(table, DOMAIN_GRANT)} ON TABLE "
                          f"public.{_quote(connection, table)} TO {quoted}")
    statements.append(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}")
    return statements


def grant_app_role(engine: Engine, role: str, *, apply: bool = True) -> list[str]:
    """Run (or, with apply=False, only compute) the grants for `role` in one transaction; return them."""
    with engine.begin() as connection:
        statements = app_role_statements(connection, role)
        if apply:
            for statement in statements:
                connection.execute(text(statement))
    return statements

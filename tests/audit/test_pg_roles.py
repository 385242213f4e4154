"""PostgreSQL's two roles: the owner migrates, the application role may only append to the audit trail."""

from __future__ import annotations

import json
import secrets
import uuid

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from gateway import migrate
from gateway.cli import main as gateway_cli
from gateway.db import Database
from tests.audit.helpers import append
from tests.factories import PASSWORD, make_tenant, make_user, sign_in

pytestmark = pytest.mark.parametrize("empty_database", ["postgresql"], indirect=True)
KEY = secrets.token_urlsafe(48)


@pytest.fixture
def owner_url(empty_database):
    """The migrated database, as the owner (here the `postgres` superuser) sees it."""
    migrate.upgrade(empty_database)
    return empty_database


@pytest.fixture
def app_role(owner_url):
    """A fresh LOGIN role; its privileges are dropped and the role removed afterwards."""
    role = f"gw_app_{uuid.uuid4().hex[:10]}"
    admin = create_engine(owner_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE ROLE "{role}" LOGIN'))
    yield role
    with admin.connect() as connection:
        connection.execute(text(f'DROP OWNED BY "{role}"'))
        connection.execute(text(f'DROP ROLE "{role}"'))
    admin.dispose()


@pytest.fixture
def grant(owner_url, tmp_path):
    """`gateway db grant-app-role --role ROLE ...` run as the owner."""
    env = {"GATEWAY_DATABASE_URL": owner_url, "GATEWAY_DATA_DIR": str(tmp_path / "cli")}

    def run(role: str, *extra: str) -> tuple[int, dict]:
        result = CliRunner().invoke(gateway_cli, ["db", "grant-app-role", "--role", role, *extra, "--json"], env=env)
        return result.exit_code, json.loads(result.stdout or result.stderr)

    return run


def as_role(url: str, role: str) -> str:
    return make_url(url).set(username=role, password=None).render_as_string(hide_password=False)


def test_the_application_role_appends_but_cannot_update_delete_or_truncate(owner_url, app_role, grant):
    code, granted = grant(app_role)
    assert code == 0 and granted["applied"]
    assert f'GRANT SELECT, INSERT ON TABLE public.audit_events TO {app_role}' in granted["statements"]

    app = Database(as_role(owner_url, app_role), audit_chain_key=KEY)
    try:
        append(app, 3)  # INSERT the entry, UPDATE the head row: all an append needs
        with app.engine.connect() as connection:
            assert connection.execute(text("SELECT current_user")).scalar() == app_role
            assert connection.execute(text("SELECT count(*) FROM audit_events")).scalar() == 3
            for statement in ("UPDATE audit_events SET actor = 'x' WHERE seq = 1",
                              "DELETE FROM audit_events WHERE seq = 3",
                              "TRUNCATE audit_events",
                              "DELETE FROM audit_chain_head",
                              "ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update",
                              "DROP TRIGGER audit_events_no_update ON audit_events"):
                with pytest.raises(DBAPIError, match=r"permission denied|must be owner"):
                    connection.execute(text(statement))
                connection.rollback()
    finally:
        app.dispose()

    # The owner holds every privilege, and the triggers still refuse it.
    owner = create_engine(owner_url)
    try:
        with owner.connect() as connection:
            for statement in ("UPDATE audit_events SET actor = 'x' WHERE seq = 1",
                              "DELETE FROM audit_events WHERE seq = 3", "TRUNCATE audit_events"):
                with pytest.raises(DBAPIError, match="append-only"):
                    connection.execute(text(statement))
                connection.rollback()
    finally:
        owner.dispose()


def test_the_gateway_runs_as_the_application_role(owner_url, app_role, grant, redis_service, tmp_path):
    from gateway.app import create_app
    from gateway.settings import Settings

    assert grant(app_role)[0] == 0
    settings = Settings.from_env({}, env="test", data_dir=tmp_path, database_url=as_role(owner_url, app_role),
                                 redis_url=redis_service.url, audit_chain_key=KEY)
    app = create_app(settings)
    db = app.extensions["gateway"].db
    try:
        tenant = make_tenant(db)
        client = app.test_client()
        admin = sign_in(client, tenant.admin_email)
        created = client.post(f"/v1/orgs/{tenant.org_id}/api-keys", headers=admin, json={"scopes": ["requests:read"]})
        assert created.status_code == 201, created.get_json()
        auditor = sign_in(client, make_user(db, ["auditor"]))
        entries = client.get("/v1/audit", headers=auditor).get_json()["items"]
        assert {"auth.login", "api_key.create"} <= {e["action"] for e in entries}
        again = client.post("/v1/auth/token", json={"email": tenant.admin_email, "password": PASSWORD})
        assert again.status_code == 200
    finally:
        db.dispose()


def test_grants_are_refused_for_superusers_and_unknown_roles(app_role, grant):
    code, refused = grant("postgres")
    assert code == 2 and "superuser" in refused["error"]["message"]
    code, refused = grant("no_such_role_here")
    assert code == 2 and "does not exist" in refused["error"]["message"]
    code, refused = grant("Robert'); DROP TABLE audit_events;--")
    assert code == 2 and refused["error"]["code"] == "ROLE_REFUSED"
    code, printed = grant(app_role, "--print-only")
    assert code == 0 and not printed["applied"] and printed["statements"]

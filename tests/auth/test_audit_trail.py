"""The audit trail: what is recorded, who may read it, and tamper detection by `gateway audit verify`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from sqlalchemy import text

from gateway.db import Database
from tests.audit.helpers import append, drop_append_only_triggers
from tests.factories import PASSWORD, bearer, make_tenant, make_user, sign_in
from tests.fixtures.live import settings_environment


def _entries(client, headers, **query):
    response = client.get("/v1/audit", headers=headers, query_string=query)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["items"]


def test_logins_keys_and_denials_are_audited(client, db):
    auditor = sign_in(client, make_user(db, ["auditor"]))
    tenant = make_tenant(db)
    ok = client.post("/v1/auth/token", json={"email": tenant.admin_email, "password": PASSWORD})
    bad = client.post("/v1/auth/token", json={"email": tenant.admin_email, "password": "wrong password"})
    admin = {"Authorization": f"Bearer {ok.get_json()['access_token']}"}
    created = client.post(f"/v1/orgs/{tenant.org_id}/api-keys", headers=admin, json={"scopes": ["requests:read"]})
    key_id = created.get_json()["id"]
    revoked = client.delete(f"/v1/orgs/{tenant.org_id}/api-keys/{key_id}", headers=admin)
    denied = client.get("/v1/audit", headers=bearer(tenant.api_key))
    unauthenticated = client.get("/v1/me", headers=bearer("rgw_nope"))

    def one(response):
        (entry,) = _entries(client, auditor, request_id=response.headers["X-Request-ID"])
        return entry

    assert (one(ok)["action"], one(ok)["result"], one(ok)["actor"]) == (
        "auth.login", "success", f"user:{tenant.admin_id}")
    assert (one(bad)["action"], one(bad)["result"]) == ("auth.login", "failure")
    assert (one(created)["action"], one(created)["object"]) == ("api_key.create", f"api_key:{key_id}")
    assert one(revoked)["action"] == "api_key.revoke"
    assert (one(denied)["action"], one(denied)["result"], one(denied)["actor"]) == (
        "access.denied", "denied", f"api_key:{tenant.api_key_id}")
    assert (one(unauthenticated)["action"], one(unauthenticated)["result"]) == ("auth.credential", "denied")
    for entry in _entries(client, auditor, limit=100):
        assert set(entry) == {"seq", "at", "actor", "org", "action", "object", "result", "ip", "request_id", "hash"}
        assert "@" not in json.dumps(entry)  # no email addresses, no PHI


def test_audit_filters_and_pagination(client, db):
    auditor = sign_in(client, make_user(db, ["auditor"]))
    tenant = make_tenant(db)
    for _ in range(3):
        sign_in(client, tenant.requester_email)
    mine = _entries(client, auditor, actor=f"user:{tenant.requester_id}", limit=2)
    assert len(mine) == 2 and all(e["actor"] == f"user:{tenant.requester_id}" for e in mine)
    query = {"actor": f"user:{tenant.requester_id}", "limit": 2}
    page = client.get("/v1/audit", headers=auditor, query_string=query).get_json()
    rest = client.get("/v1/audit", headers=auditor, query_string={**query, "cursor": page["next_cursor"]}).get_json()
    assert rest["items"]
    assert max(e["seq"] for e in rest["items"]) < min(e["seq"] for e in page["items"])


def _gateway(settings, *args: str) -> tuple[int, dict]:
    """The real console script, in a process of its own, with the settings in its environment."""
    env = {**os.environ, **settings_environment(settings)}
    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), "gateway"), *args, "--json"],
                            env=env, capture_output=True, text=True, timeout=120)
    return result.returncode, json.loads(result.stdout or result.stderr)


def test_audit_rows_cannot_be_changed_by_sql(db):
    import pytest
    from sqlalchemy.exc import DBAPIError

    make_tenant(db)  # ensures rows exist
    statements = ["UPDATE audit_events SET actor = 'x' WHERE seq = 1", "DELETE FROM audit_events WHERE seq = 1",
                  "DELETE FROM audit_events"]
    if db.engine.dialect.name == "postgresql":
        statements.append("TRUNCATE audit_events")  # a statement-level trigger (row triggers never see it)
    with db.engine.connect() as connection:
        for statement in statements:
            with pytest.raises(DBAPIError, match="append-only"):
                connection.execute(text(statement))
            connection.rollback()


def test_gateway_audit_verify_detects_edited_and_deleted_rows(empty_database_any, checkpoint_bucket, tmp_path):
    from gateway import migrate
    from gateway.settings import Settings
    from tests.fixtures.s3 import MOTO_REGION

    url = empty_database_any
    migrate.upgrade(url)
    settings = Settings.from_env({}, env="test", data_dir=tmp_path, database_url=url,
                                 s3_endpoint_url=checkpoint_bucket.endpoint_url, s3_region=MOTO_REGION,
                                 audit_checkpoint_bucket=checkpoint_bucket.bucket, audit_checkpoint_retention_days=1)
    db = Database.from_settings(settings)
    append(db, 6)
    code, written = _gateway(settings, "audit", "checkpoint")
    assert code == 0 and written["checkpoint"]["seq"] == 6
    code, report = _gateway(settings, "audit", "verify")
    assert (code, report["ok"], report["checked"], report["problems"], report["checkpoints"]) == (0, True, 6, [], 1)

    with db.engine.begin() as connection:
        drop_append_only_triggers(connection)
        connection.execute(text("UPDATE audit_events SET actor = 'user:someone-else' WHERE seq = 3"))
    code, report = _gateway(settings, "audit", "verify")
    assert code == 1 and not report["ok"]
    assert any("entry 3 was altered" in p for p in report["problems"])

    with db.engine.begin() as connection:
        connection.execute(text("UPDATE audit_events SET actor = 'user:test-2' WHERE seq = 3"))  # restore
    assert _gateway(settings, "audit", "verify")[0] == 0
    with db.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_events WHERE seq = 4"))
    code, report = _gateway(settings, "audit", "verify")
    assert code == 1 and any("4..4 are missing" in p for p in report["problems"])

    with db.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_events WHERE seq = 6"))
    code, report = _gateway(settings, "audit", "verify")
    assert any("chain head" in p for p in report["problems"])
    assert any("checkpoint 1" in p and "holds 5" in p for p in report["problems"])
    db.dispose()


def test_actions_fail_closed_when_the_audit_trail_cannot_be_written(empty_database_any, settings):
    """With the chain head gone (a broken audit store), key creation answers 503 and creates nothing."""
    import dataclasses

    from sqlalchemy import func, select

    from gateway import migrate
    from gateway.app import create_app
    from gateway.auth.models import ApiKey

    migrate.upgrade(empty_database_any)
    app = create_app(dataclasses.replace(settings, database_url=empty_database_any))
    db = app.extensions["gateway"].db
    tenant = make_tenant(db)
    client = app.test_client()
    admin = sign_in(client, tenant.admin_email)
    with db.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_chain_head"))
    response = client.post(f"/v1/orgs/{tenant.org_id}/api-keys", headers=admin, json={"scopes": ["requests:read"]})
    assert response.status_code == 503
    assert response.get_json()["code"] == "AUDIT_UNAVAILABLE" and response.headers["Retry-After"]
    with db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.org_id == tenant.org_id)) == 1
    # Sign-in is audited too, so it also refuses rather than letting someone in unrecorded.
    assert client.post("/v1/auth/token", json={"email": tenant.admin_email, "password": PASSWORD}).status_code == 503
    db.dispose()

"""Per-request cost of authentication: API-key lookup and token verification.

Prints, for SQLite and PostgreSQL (when reachable): the framework floor (an
unauthenticated /healthz through the same app), /v1/me with an API key and
with a portal token, and the raw operations alone (token verify, API-key
lookup in one transaction).  Redis is the local one if it answers, else a
throwaway redis-server.  Run: .venv/bin/python -m bench.auth [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

from gateway import migrate
from gateway.app import create_app
from gateway.auth.api_keys import authenticate_api_key
from gateway.settings import Settings
from tests.factories import make_tenant, sign_in

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def per_call_us(fn, rounds: int) -> float:
    """Median of `rounds` calls, in microseconds (after a short warm-up)."""
    for _ in range(min(50, rounds)):
        fn()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e6


def redis_url() -> tuple[str, object | None]:
    import redis

    try:
        redis.Redis(socket_connect_timeout=1).ping()
        return "redis://127.0.0.1:6379/15", None
    except Exception:
        from infra.localstack.redis import RedisProcess

        server = RedisProcess(workdir=tempfile.mkdtemp()).start()
        return server.url, server


def run(label: str, database_url: str, redis: str, rounds: int) -> None:
    migrate.upgrade(database_url)
    settings = Settings.from_env({}, env="test", data_dir=Path(tempfile.mkdtemp()), database_url=database_url,
                                 redis_url=redis, api_rate_limit="1000000 per minute", log_level="WARNING")
    app = create_app(settings)
    client = app.test_client()
    db = app.extensions["gateway"].db
    tokens = app.extensions["gateway.auth"].tokens
    tenant = make_tenant(db)
    token_header = sign_in(client, tenant.requester_email)
    key_header = {"Authorization": f"Bearer {tenant.api_key}"}
    token = token_header["Authorization"].split()[1]

    def lookup():
        with db.transaction() as session:
            authenticate_api_key(session, tenant.api_key)

    floor = per_call_us(lambda: client.get("/healthz"), rounds)
    with_key = per_call_us(lambda: client.get("/v1/me", headers=key_header), rounds)
    with_token = per_call_us(lambda: client.get("/v1/me", headers=token_header), rounds)
    verify = per_call_us(lambda: tokens.verify(token), rounds)
    key_lookup = per_call_us(lookup, rounds)
    print(f"\n{label}  (median of {rounds} requests)")
    print(f"  floor: GET /healthz, no auth             {floor:9.1f} µs")
    print(f"  GET /v1/me with API key                 {with_key:9.1f} µs   auth overhead {with_key - floor:8.1f} µs"
          f"  ({with_key / floor:.2f}× floor)")
    print(f"  GET /v1/me with portal token            {with_token:9.1f} µs   auth overhead {with_token - floor:8.1f} µs"
          f"  ({with_token / floor:.2f}× floor)")
    print(f"  raw: TokenService.verify (cached kid)   {verify:9.1f} µs")
    print(f"  raw: API-key lookup + compare (1 txn)   {key_lookup:9.1f} µs")
    db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=500)
    args = parser.parse_args()
    import logging

    logging.getLogger("gateway").setLevel(logging.WARNING)
    redis, server = redis_url()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            run("SQLite", f"sqlite:///{tmp}/bench.db", redis, args.rounds)
        name = f"gateway_bench_{uuid.uuid4().hex[:8]}"
        try:
            admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
            with admin.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        except Exception as error:
            print(f"\nPostgreSQL skipped: {type(error).__name__}")
            return
        try:
            run("PostgreSQL", PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", redis, args.rounds)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()

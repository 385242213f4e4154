"""The raw floor of bench/load: a bare Flask app doing one INSERT per request, served by the same gunicorn.

    GATEWAY_DATABASE_URL=... gunicorn -c infra/gunicorn.conf.py bench._floor_app:app

It uses the gateway's own Database (same engine options, SQLite pragmas, pool)
so the floor differs from the gateway only in what the gateway does per request:
authentication, validation, lookups, audit, outbox, S3, clamd.
"""

from __future__ import annotations

import functools
import os
import uuid

from flask import Flask, jsonify
from sqlalchemy import text

from gateway.db import Database

TABLE = "bench_floor_rows"


def create_table(db: Database) -> None:
    """Made by the bench before gunicorn starts (two workers racing CREATE TABLE IF NOT EXISTS on PostgreSQL
    can both try to create it)."""
    with db.transaction() as session:
        session.execute(text(f"CREATE TABLE IF NOT EXISTS {TABLE} (id VARCHAR(36) PRIMARY KEY, body VARCHAR(200))"))


app = Flask(__name__)


@functools.cache
def _database() -> Database:
    return Database(os.environ["GATEWAY_DATABASE_URL"])


@app.get("/healthz")
def healthz():
    return jsonify(status="ok")


@app.post("/insert")
def insert():
    row_id = str(uuid.uuid4())
    with _database().transaction() as session:
        session.execute(text(f"INSERT INTO {TABLE} (id, body) VALUES (:id, :body)"),  # noqa: S608 (a constant)
                        {"id": row_id, "body": "x"})
    return jsonify(id=row_id), 201

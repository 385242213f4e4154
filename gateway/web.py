"""Helpers for views: the request's database session, the adapters, the settings.

Views import these instead of reaching into `current_app` themselves, so the
request-scoped session is opened in one place and closed in one place.
"""

from __future__ import annotations

from flask import current_app, g
from sqlalchemy.orm import Session

from gateway.adapters import Adapters
from gateway.settings import Settings


def adapters() -> Adapters:
    """The adapters the application factory built for this app."""
    return current_app.extensions["gateway"]


def settings() -> Settings:
    """The injected settings."""
    return adapters().settings


def db_session() -> Session:
    """The request's session, opened on first use and closed at teardown."""
    session = g.get("_db_session")
    if session is None:
        session = g._db_session = adapters().db.sessions()
    return session


def close_db_session(_exc=None) -> None:
    """Teardown: roll back whatever a view left uncommitted and close the session."""
    session = g.pop("_db_session", None)
    if session is not None:
        session.rollback()
        session.close()

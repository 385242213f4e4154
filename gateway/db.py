"""SQLAlchemy engine and sessions per application; models live with their domain.

The same models and migrations run on SQLite (the embedded default for one
machine) and PostgreSQL (production).  Parameters are hidden from SQLAlchemy's
error messages because they can carry PHI.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from sqlalchemy import DateTime, Integer, MetaData, bindparam, create_engine, event, exc, select, text, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from gateway import clock
from gateway.sqlite_turns import WriterTurns

T = TypeVar("T")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base shared by every domain's models (one metadata for Alembic)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator):
    """A timestamp that is always timezone-aware UTC, also on SQLite (which drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use UTC-aware values")
        return value.astimezone(UTC)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time, UTC-aware, to the microsecond (read from the one clock module)."""
    return clock.utcnow()


def new_id() -> str:
    """A new opaque, unguessable identifier (UUIDv4 text)."""
    return str(uuid.uuid4())


def normalize_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever driver the URL names."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres", "postgresql+psycopg2"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


# A pooled PostgreSQL connection back in the pool for longer than this is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 1.0


def _ping_after_idle(engine: Engine) -> None:
    """Ping a pooled connection on checkout only when it has sat idle, instead of `pool_pre_ping` every time.

    A request opens several short transactions (authentication, the view, the audit), and pre-ping cost a
    round trip before each: a tenth of a worker's time under load.  A connection used within the last
    second is handed out as it is; one idle longer (where a database restart or an idle timeout would
    have cut it) is pinged, and a dead one is replaced by the pool (DisconnectionError), as pre-ping does.
    """
    @event.listens_for(engine, "connect")
    def _fresh(_dbapi_connection, record) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection, record) -> None:
        if record is not None:
            record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, _proxy) -> None:
        if time.monotonic() - record.info.get("returned_at", 0.0) < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:  # the pool discards it and tries a new connection
            raise exc.DisconnectionError() from error


def _take_turns_to_write(engine: Engine, turns: WriterTurns) -> None:
    """Writers to this SQLite file wait for their turn in the file lock before SQLite's (gateway.sqlite_turns):
    taken before a connection's first write, given up right after its commit or rollback."""
    @event.listens_for(engine, "before_cursor_execute")
    def _before(_connection, cursor, statement, _parameters, _context, _executemany) -> None:
        turns.before_statement(cursor.connection, statement)

    dialect = engine.dialect  # this engine's own dialect object: wrapping its methods touches no other engine
    commit, rollback = dialect.do_commit, dialect.do_rollback

    # SQLAlchemy hands do_commit/do_rollback the pool's proxy of the connection, while statements (and so
    # the turns) see the DB-API connection itself: the turn is keyed on the latter.  Unwrapped, the turn
    # would stay held after COMMIT until the pool took the connection back.
    def do_commit(connection) -> None:
        try:
            commit(connection)
        finally:
            turns.release(getattr(connection, "dbapi_connection", connection))

    def do_rollback(connection) -> None:
        try:
            rollback(connection)
        finally:
            turns.release(getattr(connection, "dbapi_connection", connection))

    dialect.do_commit, dialect.do_rollback = do_commit, do_rollback
    for pool_event in ("checkin", "close", "invalidate"):  # never left held by a connection that went away
        event.listen(engine, pool_event, lambda dbapi_connection, *_: turns.release(dbapi_connection))


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets gunicorn workers, the relay and RQ workers read while one writes;
    # busy_timeout makes writers wait instead of failing at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


# Where a session carries the audit chain key (gateway.audit.service reads it); sessions from a
# Database built without the key cannot append to the audit trail.
AUDIT_CHAIN_KEY_INFO = "gateway.audit_chain_key"


def commit_then(session: Session, read: Callable[..., T], *args) -> T:
    """Commit the caller's changes now, then `read(session, *args)` in a new transaction of the same session.

    For a service that answers a change with the changed object as it now stands: building that answer
    (the rules' assessment, the fee, the documents) reads a good deal, and inside the writing transaction it
    would keep SQLite's one write lock (every writer of the file waits) or PostgreSQL's row lock held the
    while.  Committed first, the lock is given back and the answer is read without one; the objects stay
    loaded (the sessions do not expire them on commit).  The caller's transaction block then commits an
    empty read.  On PostgreSQL the facts the change read are read again for the answer, which measured no
    dearer per submission (bench.load, interleaved), and the relay can start the hand-over meanwhile.
    """
    session.commit()
    return read(session, *args)


def grouped(session: Session, key, value, keys) -> dict:
    """{k: the set of `value` over the rows whose `key` column is k}, for those of `keys` that have rows: one
    query where a loop would ask once per key (which webhooks, which users already have an event)."""
    found: dict = {}
    for k, v in session.execute(select(key, value).where(key.in_(list(keys)))):
        found.setdefault(k, set()).add(v)
    return found


def lease_due(session: Session, table, state: str, *, now: datetime, limit: int, lease: timedelta) -> list:
    """Ids of up to `limit` rows of `table` whose `state` column is 'pending' and whose `next_attempt_at` is
    due by `now`, oldest first, pushed to `now + lease` so that no other relay takes them meanwhile (webhook
    deliveries, e-mails, reset e-mails).  Commit before handing the ids on: on PostgreSQL rows another relay
    holds are skipped (SKIP LOCKED), on SQLite the write lock serialises relays, and either way the UPDATE
    re-checks "still due", so one id is handed out once per lease."""
    postgresql = session.get_bind().dialect.name == "postgresql"
    return list(session.scalars(_lease_statement(table, state, postgresql),
                                {"now": now, "limit": limit, "until": now + lease}))


def picked_once(table, picked, *, postgresql: bool):
    """`table.id IN (the ids `picked` chooses)`, chosen once: `picked` selects ids with a LIMIT and FOR UPDATE
    SKIP LOCKED (a claim or a lease).

    Written straight into the UPDATE as `id IN (subquery)`, PostgreSQL may run the subquery as the inner side
    of a nested loop, again for each row it scans; each run skips the rows this UPDATE has changed meanwhile
    and picks the next, so a claim of 100 could take every due row at once (after an outage: the whole
    backlog in one transaction, its lease running out before the last row was handed on).  There the ids are
    a MATERIALIZED CTE, chosen once.  SQLite runs an uncorrelated IN subquery once anyway, and the CTE form
    made its claims slower (bench.load: the relay's submit → enqueued p99 from 128 to 657 ms), so SQLite
    keeps the subquery."""
    if not postgresql:
        return table.c.id.in_(picked.scalar_subquery())
    chosen = picked.cte("picked").prefix_with("MATERIALIZED")
    return table.c.id.in_(select(chosen.c.id))


@functools.lru_cache(maxsize=16)
def _lease_statement(table, state: str, postgresql: bool):
    """Built once per table, with the moment and the limit as parameters: the relay leases every second, and
    building the statement and running it through the ORM's bulk-update machinery each time was most of an
    idle relay's CPU (with gateway.outbox's claim)."""
    now = bindparam("now", type_=table.c.next_attempt_at.type)
    due = (table.c[state] == "pending") & (table.c.next_attempt_at <= now)
    ids = (select(table.c.id).where(due).order_by(table.c.next_attempt_at, table.c.id)
           .limit(bindparam("limit", type_=Integer())).with_for_update(skip_locked=True))
    return (update(table).where(picked_once(table, ids, postgresql=postgresql), due)
            .values(next_attempt_at=bindparam("until", type_=table.c.next_attempt_at.type))
            .returning(table.c.id))


class Database:
    """One engine and session factory; built by the app factory, the CLI and workers."""

    def __init__(self, url: str, *, echo: bool = False, audit_chain_key: str | None = None):
        self.url = normalize_url(url)
        parsed = make_url(self.url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        kwargs: dict = {"echo": echo, "hide_parameters": True, "future": True}
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 15}
        else:
            # Pinged on checkout only after a pause (see _ping_after_idle), not before every transaction.
            kwargs.update(pool_pre_ping=False, pool_size=5, max_overflow=10,
                          connect_args={"connect_timeout": 5})
        self.engine: Engine = create_engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            if parsed.database and parsed.database != ":memory:":
                _take_turns_to_write(self.engine, WriterTurns.for_database(str(Path(parsed.database).resolve())))
        else:
            _ping_after_idle(self.engine)
        # The key rides on the session (never in a row), so `record(session, ...)` keeps its signature.
        info = {AUDIT_CHAIN_KEY_INFO: audit_chain_key} if audit_chain_key else {}
        self.sessions = sessionmaker(self.engine, expire_on_commit=False, info=info)

    @classmethod
    def from_settings(cls, settings) -> Database:
        """Build from the injected settings."""
        return cls(settings.database_url, audit_chain_key=settings.audit_chain_key)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session committed on success and rolled back on any error."""
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def write_transaction(self) -> Iterator[Session]:
        """A transaction that will write and must not interleave with another writer's read-then-write.

        On SQLite it takes the database's write lock at once (BEGIN IMMEDIATE), so what it reads cannot
        change before it writes; other writers wait (busy_timeout), readers carry on (WAL).  On PostgreSQL
        it is an ordinary transaction: row locks come from `SELECT ... FOR UPDATE` (see
        `gateway.intake.lifecycle.locked_request`).  Never open a second writing transaction (such as
        `audit.record_now`) inside one: on SQLite it would wait for this one's lock.
        """
        session = self.sessions()
        try:
            if self.is_sqlite:
                session.execute(text("BEGIN IMMEDIATE"))
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def ping(self) -> None:
        """Raise if the database does not answer a trivial query."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Close pooled connections (after fork, or at shutdown)."""
        self.engine.dispose()

"""Suite-wide fixtures: real services started by the tests themselves, and the app on each database."""

from __future__ import annotations

import uuid

import pytest

from gateway.app import create_app
from gateway.settings import Settings
from infra.aws.bootstrap import aws_clients, bootstrap_checkpoint_bucket, bootstrap_documents_bucket
from tests.factories import FACILITY_TIMEZONE, forget_address_lockouts

pytest_plugins = [
    "tests.fixtures.databases",
    "tests.fixtures.clamd",
    "tests.fixtures.s3",
    "tests.fixtures.redis",
    "tests.fixtures.logs",  # before live, which imports it
    "tests.fixtures.live",
]


# Fixtures that start or need a real service.  A test whose fixtures reach none of them is a unit test
# (service logic with fakes): `make test-fast` runs just those, `make test` runs everything.
SERVICE_FIXTURES = frozenset({"database_url", "empty_database", "empty_database_any", "redis_service",
                              "clamd_service", "moto_service", "chromium"})


# Read last, whatever the collection order: it looks at every log the tests before it produced.
LAST_MODULE = "test_zz_logs_hold_no_phi.py"


def pytest_addoption(parser):
    parser.addoption("--all-databases", action="store_true",
                     help="run every database-parametrized test on both databases (by default the Chromium "
                          "tests run on SQLite only and tests marked one_database on PostgreSQL only)")


def _home_database(item) -> str | None:
    """The one database a test runs on by default, or None when it runs on both.

    Chromium tests: SQLite (`make run`'s database; a page's data path is the service functions the API
    and test-client page tests already run on both).  `one_database` tests: PostgreSQL, production's, or
    the database the marker names.  Both are behaviour no database changes: translation, rendering,
    signing, protocol checks.  Queries, locks, migrations, dates and concurrency stay on both.
    """
    if "chromium" in getattr(item, "fixturenames", ()):
        return "sqlite"
    marker = item.get_closest_marker("one_database")
    if marker:
        return marker.args[0] if marker.args else "postgresql"
    return None


def _off_home(item) -> bool:
    callspec = getattr(item, "callspec", None)
    home = _home_database(item)
    return (home is not None and callspec is not None and "database_url" in callspec.params
            and callspec.params["database_url"] != home)


def pytest_collection_modifyitems(config, items):
    """Mark every test `unit` or `integration` by the services its fixtures reach; the logs' check goes last.

    Unless `--all-databases`, a test with a home database (`_home_database`) skips the other one: the
    suite's 30 minutes go to what differs between the databases.
    """
    if not config.getoption("--all-databases"):
        dropped = [item for item in items if _off_home(item)]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = [item for item in items if not _off_home(item)]
    items.sort(key=lambda item: item.path.name == LAST_MODULE)  # stable: the order is otherwise kept
    for item in items:
        if item.get_closest_marker("integration"):
            continue  # starts its own processes, without a shared fixture
        needs_services = not SERVICE_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))
        item.add_marker(pytest.mark.integration if needs_services or item.get_closest_marker("slow")
                        else pytest.mark.unit)


class SessionBucket:
    """The bucket the session's apps write to; rebuilt the same way after a test restarts moto."""

    def __init__(self, moto_service):
        from tests.fixtures.s3 import MOTO_ACCESS_KEY, MOTO_REGION, MOTO_SECRET_KEY, TEST_KMS_ALIAS

        self.endpoint_url, self.region = moto_service.endpoint_url, MOTO_REGION
        self.bucket = f"gateway-docs-{uuid.uuid4().hex[:16]}"
        # The alias, as production configures it: it still names the key after moto restarts empty.
        self.kms_key_id = TEST_KMS_ALIAS
        self.s3_client, self.kms_client = aws_clients(self.endpoint_url, MOTO_REGION, MOTO_ACCESS_KEY, MOTO_SECRET_KEY)
        # Audit-checkpoint buckets, one per database: checkpoints of two chains never share a bucket.
        self.audit_buckets: list[str] = []
        self.rebootstrap()

    def new_audit_bucket(self) -> str:
        """A fresh Object Lock bucket for one database's audit checkpoints (locked for a day)."""
        name = f"gateway-audit-{uuid.uuid4().hex[:16]}"
        self.audit_buckets.append(name)
        bootstrap_checkpoint_bucket(self.s3_client, name, self.region, 1, apply_bucket_policy=False)
        return name

    def rebootstrap(self) -> None:
        """Create the bucket and key (idempotent).  moto evaluates the tag-conditional Deny as
        unconditional, so this bucket goes without the policy; tests/infra asserts the policy."""
        bootstrap_documents_bucket(self.s3_client, self.kms_client, self.bucket, self.kms_key_id, self.region,
                                   apply_bucket_policy=False)
        for name in self.audit_buckets:
            bootstrap_checkpoint_bucket(self.s3_client, name, self.region, 1, apply_bucket_policy=False)


@pytest.fixture(scope="session")
def session_bucket(moto_service):
    """One bootstrapped documents bucket shared by the session's apps."""
    return SessionBucket(moto_service)


@pytest.fixture(scope="session")
def settings(database_url, redis_service, clamd_service, moto_service, session_bucket, tmp_path_factory):
    """Settings pointing at the services this test session started."""
    return Settings.from_env(
        {},
        env="test",
        data_dir=tmp_path_factory.mktemp("data"),
        database_url=database_url,
        redis_url=redis_service.url,
        clamd_addresses=(clamd_service.address,),
        s3_endpoint_url=moto_service.endpoint_url,
        s3_bucket=session_bucket.bucket,
        s3_region=session_bucket.region,
        kms_key_id=session_bucket.kms_key_id,
        audit_checkpoint_bucket=session_bucket.new_audit_bucket(),
        audit_checkpoint_retention_days=1,
        storage_timeout=3.0,
        facility_timezone=FACILITY_TIMEZONE,
        # Hundreds of sign-ins come from 127.0.0.1 in one session; test_login_and_limits checks the limit.
        sign_in_rate_limit="100000 per minute",
        password_reset_rate_limit="100000 per minute",
        # Likewise for bad credentials and their audit entries (tests/auth/test_auth_flood.py runs the defaults).
        bearer_failure_rate_limit="100000 per minute",
        bearer_failure_audit_first=100000,
        bearer_failure_audit_max_entries=1000000,
        log_json=True,
        # The suite's sample "authorizations" are one-word PDFs, not forms: read, each would be DOC_UNREADABLE
        # (and wait for an OCR job no worker runs).  tests/reading turns reading on for its own apps.
        reading_enabled=False,
        # Real Argon2id at its least cost: the suite makes and signs in thousands of accounts, each a quarter
        # of a second at production cost.  tests/auth/test_sign_in_timing.py measures the production profile.
        password_hash_profile="test-minimal",
    )


@pytest.fixture(scope="session")
def app(settings):
    """The gateway app on the session's database and services."""
    application = create_app(settings)
    application.config["TESTING"] = False  # exceptions go through the real handlers
    yield application
    application.extensions["gateway"].db.dispose()


@pytest.fixture(scope="session")
def clock(app):
    """The session app's clock: tests take "today" from it (freeze it with time_machine for boundaries)."""
    return app.extensions["gateway"].clock


@pytest.fixture
def client(app):
    """A test client for the session app.

    Every test client signs in from 127.0.0.1, so the per-address sign-in lockout is state shared by the
    whole session: a test that fails sign-ins on purpose (or schemathesis' random passwords) would lock
    out the tests after it. Each test starts with that address unlocked; per-account lockouts stay.
    """
    forget_address_lockouts(app.extensions["gateway"].db)
    return app.test_client()


@pytest.fixture(scope="session")
def db(app):
    """The session app's Database."""
    return app.extensions["gateway"].db


@pytest.fixture(scope="session")
def tokens(app):
    """The session app's TokenService."""
    return app.extensions["gateway.auth"].tokens

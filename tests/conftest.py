"""Suite-wide fixtures: real services started by the tests themselves, and the app on each database."""

from __future__ import annotations

import uuid

import pytest

from gateway.app import create_app
from gateway.settings import Settings
from infra.aws.bootstrap import aws_clients, bootstrap_documents_bucket

pytest_plugins = [
    "tests.fixtures.databases",
    "tests.fixtures.clamd",
    "tests.fixtures.s3",
    "tests.fixtures.redis",
]


@pytest.fixture(scope="session")
def session_bucket(moto_service):
    """One bootstrapped documents bucket shared by the session's apps."""
    from tests.fixtures.s3 import MOTO_ACCESS_KEY, MOTO_REGION, MOTO_SECRET_KEY, TEST_KMS_ALIAS, S3Bucket

    s3, kms = aws_clients(moto_service.endpoint_url, MOTO_REGION, MOTO_ACCESS_KEY, MOTO_SECRET_KEY)
    name = f"gateway-docs-{uuid.uuid4().hex[:16]}"
    # moto evaluates the tag-conditional Deny as unconditional, so the app's bucket goes without
    # the policy here; tests/infra/test_bucket_bootstrap.py asserts the policy on its own bucket.
    result = bootstrap_documents_bucket(s3, kms, name, TEST_KMS_ALIAS, MOTO_REGION, apply_bucket_policy=False)
    return S3Bucket(endpoint_url=moto_service.endpoint_url, bucket=name, kms_key_id=result.kms_key_arn,
                    region=MOTO_REGION, s3_client=s3, kms_client=kms)


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
        storage_timeout=3.0,
        log_json=True,
    )


@pytest.fixture(scope="session")
def app(settings):
    """The gateway app on the session's database and services."""
    application = create_app(settings)
    application.config["TESTING"] = False  # exceptions go through the real handlers
    yield application
    application.extensions["gateway"].db.dispose()


@pytest.fixture
def client(app):
    """A test client for the session app."""
    return app.test_client()


@pytest.fixture(scope="session")
def db(app):
    """The session app's Database."""
    return app.extensions["gateway"].db


@pytest.fixture(scope="session")
def tokens(app):
    """The session app's TokenService."""
    return app.extensions["gateway.auth"].tokens

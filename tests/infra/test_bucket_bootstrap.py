"""The documents and audit-checkpoint bucket bootstraps against a real moto server: configuration and idempotence."""

from __future__ import annotations

import json
import uuid

import pytest
from botocore.exceptions import ClientError

from gateway.storage import CLEAN, SCAN_STATUS_TAG
from infra.aws import bootstrap
from infra.aws.bootstrap import (
    aws_clients,
    bootstrap_documents_bucket,
    read_bucket_configuration,
)
from tests.fixtures.s3 import MOTO_ACCESS_KEY, MOTO_REGION, MOTO_SECRET_KEY

ALIAS = "alias/records-gateway-documents"


@pytest.fixture
def clients(moto_service):
    return aws_clients(moto_service.endpoint_url, MOTO_REGION, MOTO_ACCESS_KEY, MOTO_SECRET_KEY)


def fresh_bucket() -> str:
    return f"bootstrap-{uuid.uuid4().hex[:20]}"


def statements_by_sid(configuration: dict) -> dict[str, dict]:
    return {s["Sid"]: s for s in configuration["policy"]["Statement"]}


def assert_production_configuration(configuration: dict, bucket: str, key_arn: str) -> None:
    [rule] = configuration["encryption"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": key_arn,
    }
    assert rule["BucketKeyEnabled"] is True

    assert configuration["public_access_block"] == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    assert configuration["versioning"] == "Enabled"

    statements = statements_by_sid(configuration)
    assert set(statements) == {"DenyInsecureTransport", "DenyUnscannedObjectReads"}
    tls = statements["DenyInsecureTransport"]
    assert tls["Effect"] == "Deny" and tls["Principal"] == "*" and tls["Action"] == "s3:*"
    assert sorted(tls["Resource"]) == [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    unscanned = statements["DenyUnscannedObjectReads"]
    assert unscanned["Effect"] == "Deny" and unscanned["Principal"] == "*"
    assert sorted(unscanned["Action"]) == ["s3:GetObject", "s3:GetObjectVersion"]
    assert unscanned["Resource"] == f"arn:aws:s3:::{bucket}/*"
    assert unscanned["Condition"] == {
        "StringNotEquals": {"s3:ExistingObjectTag/scan-status": "clean"}
    }

    [lifecycle] = configuration["lifecycle"]
    assert lifecycle["Status"] == "Enabled"
    assert lifecycle["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert lifecycle["Filter"] == {"Prefix": ""}
    assert configuration["ownership"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]


def test_bootstrap_applies_the_production_configuration(clients):
    s3, kms = clients
    bucket = fresh_bucket()

    result = bootstrap_documents_bucket(s3, kms, bucket, ALIAS, MOTO_REGION)

    assert result.created_bucket
    assert kms.describe_key(KeyId=ALIAS)["KeyMetadata"]["Arn"] == result.kms_key_arn
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == MOTO_REGION
    assert_production_configuration(
        read_bucket_configuration(s3, bucket), bucket, result.kms_key_arn
    )


def test_bootstrap_twice_changes_nothing(clients):
    s3, kms = clients
    bucket = fresh_bucket()
    first = bootstrap_documents_bucket(s3, kms, bucket, ALIAS, MOTO_REGION)
    before = read_bucket_configuration(s3, bucket)

    second = bootstrap_documents_bucket(s3, kms, bucket, ALIAS, MOTO_REGION)

    assert not second.created_bucket and not second.created_key
    assert second.kms_key_arn == first.kms_key_arn
    assert read_bucket_configuration(s3, bucket) == before
    assert_production_configuration(before, bucket, first.kms_key_arn)


def test_bootstrap_keeps_statements_and_rules_added_by_operators(clients):
    s3, kms = clients
    bucket = fresh_bucket()
    bootstrap_documents_bucket(s3, kms, bucket, ALIAS, MOTO_REGION)
    configuration = read_bucket_configuration(s3, bucket)
    extra_statement = {
        "Sid": "OpsAuditRead",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:role/audit"},
        "Action": "s3:GetBucketPolicy",
        "Resource": f"arn:aws:s3:::{bucket}",
    }
    policy = configuration["policy"]
    policy["Statement"].append(extra_statement)
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    extra_rule = {
        "ID": "expire-tmp",
        "Filter": {"Prefix": "tmp/"},
        "Status": "Enabled",
        "Expiration": {"Days": 7},
    }
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": configuration["lifecycle"] + [extra_rule]}
    )

    bootstrap_documents_bucket(s3, kms, bucket, ALIAS, MOTO_REGION)

    after = read_bucket_configuration(s3, bucket)
    assert set(statements_by_sid(after)) == {
        "DenyInsecureTransport",
        "DenyUnscannedObjectReads",
        "OpsAuditRead",
    }
    assert sorted(r["ID"] for r in after["lifecycle"]) == [
        "abort-incomplete-multipart-uploads",
        "expire-tmp",
    ]


def test_bootstrap_in_us_east_1_sends_no_location_constraint(moto_service):
    s3, kms = aws_clients(moto_service.endpoint_url, "us-east-1", MOTO_ACCESS_KEY, MOTO_SECRET_KEY)
    bucket = fresh_bucket()
    result = bootstrap_documents_bucket(s3, kms, bucket, ALIAS, "us-east-1")
    assert result.created_bucket
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] in (None, "")
    assert not bootstrap_documents_bucket(s3, kms, bucket, ALIAS, "us-east-1").created_bucket


def test_bootstrap_can_skip_the_policy_for_emulators(clients):
    s3, kms = clients
    bucket = fresh_bucket()
    bootstrap_documents_bucket(s3, kms, bucket, ALIAS, MOTO_REGION, apply_bucket_policy=False)
    configuration = read_bucket_configuration(s3, bucket)
    assert configuration["policy"] is None
    assert configuration["versioning"] == "Enabled" and configuration["encryption"]


def test_policy_tag_matches_the_storage_package():
    # The bucket policy and the store must agree on the tag that gates reads.
    assert (bootstrap.SCAN_STATUS_TAG, bootstrap.CLEAN) == (SCAN_STATUS_TAG, CLEAN)


def test_alias_must_be_a_customer_alias(clients):
    s3, kms = clients
    for alias in ("records-gateway-documents", "alias/aws/s3"):
        with pytest.raises(ValueError):
            bootstrap_documents_bucket(s3, kms, fresh_bucket(), alias, MOTO_REGION)


def test_cli_prints_result_and_configuration_as_json(moto_service, capsys):
    bucket = fresh_bucket()
    argv = [
        "--endpoint-url", moto_service.endpoint_url,
        "--bucket", bucket,
        "--kms-alias", ALIAS,
        "--region", MOTO_REGION,
        "--bucket-policy", "apply",
    ]  # fmt: skip
    assert bootstrap.main(argv) == 0
    output = json.loads(capsys.readouterr().out)
    assert output["result"]["bucket"] == bucket
    assert_production_configuration(
        output["configuration"], bucket, output["result"]["kms_key_arn"]
    )

    # Default on a loopback endpoint: an emulator, so no policy (moto would deny everything).
    assert bootstrap.main(argv[:-2]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["result"]["created_bucket"] is False
    assert "bucket policy not applied" in captured.err


def test_the_audit_checkpoint_bucket_locks_in_compliance_mode(clients):
    s3, _ = clients
    bucket = fresh_bucket()
    result = bootstrap.bootstrap_checkpoint_bucket(s3, bucket, MOTO_REGION, 30)
    assert result.created_bucket and result.retention_days == 30
    configuration = bootstrap.read_checkpoint_bucket_configuration(s3, bucket)
    assert configuration["object_lock"]["ObjectLockEnabled"] == "Enabled"
    retention = configuration["object_lock"]["Rule"]["DefaultRetention"]
    assert (retention["Mode"], retention["Days"]) == ("COMPLIANCE", 30)
    assert configuration["versioning"] == "Enabled"
    assert configuration["encryption"][0]["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert all(configuration["public_access_block"].values())
    assert configuration["ownership"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert set(statements_by_sid(configuration)) == {"DenyInsecureTransport"}


def test_the_audit_checkpoint_bucket_locks_even_objects_put_without_lock_headers(clients):
    s3, _ = clients
    bucket = fresh_bucket()
    # No policy: moto would apply its conditional Deny to every object request.
    bootstrap.bootstrap_checkpoint_bucket(s3, bucket, MOTO_REGION, 30, apply_bucket_policy=False)
    configuration = bootstrap.read_checkpoint_bucket_configuration(s3, bucket)
    version = s3.put_object(Bucket=bucket, Key="checkpoints/x.json", Body=b"{}", ChecksumAlgorithm="SHA256")
    with pytest.raises(ClientError):
        s3.delete_object(Bucket=bucket, Key="checkpoints/x.json", VersionId=version["VersionId"])

    # Again, with an object in it (moto, unlike S3, refuses a lock configuration on a non-empty bucket).
    again = bootstrap.bootstrap_checkpoint_bucket(s3, bucket, MOTO_REGION, 30, apply_bucket_policy=False)
    assert not again.created_bucket
    assert bootstrap.read_checkpoint_bucket_configuration(s3, bucket) == configuration


def test_a_bucket_without_object_lock_cannot_hold_checkpoints(clients):
    s3, _ = clients
    bucket = fresh_bucket()
    bootstrap.ensure_bucket(s3, bucket, MOTO_REGION)
    with pytest.raises(RuntimeError, match="without Object Lock"):
        bootstrap.bootstrap_checkpoint_bucket(s3, bucket, MOTO_REGION, 30)


def test_cli_also_bootstraps_the_audit_bucket(moto_service, capsys):
    bucket, audit = fresh_bucket(), fresh_bucket()
    argv = ["--endpoint-url", moto_service.endpoint_url, "--bucket", bucket, "--region", MOTO_REGION,
            "--audit-bucket", audit, "--audit-retention-days", "7"]
    assert bootstrap.main(argv) == 0
    output = json.loads(capsys.readouterr().out)
    assert output["audit_checkpoints"]["result"] == {
        "bucket": audit, "region": MOTO_REGION, "retention_days": 7, "created_bucket": True}
    lock = output["audit_checkpoints"]["configuration"]["object_lock"]
    assert lock["Rule"]["DefaultRetention"]["Mode"] == "COMPLIANCE"

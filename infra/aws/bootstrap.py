"""Create the documents and audit-checkpoint buckets the way production needs them; safe to run again.

    python -m infra.aws.bootstrap --endpoint-url http://127.0.0.1:5000 \\
        --bucket records-gateway-documents --kms-alias alias/records-gateway-documents \\
        --audit-bucket records-gateway-audit-checkpoints --audit-retention-days 2190 \\
        --region eu-central-1

The audit-checkpoint bucket is created with Object Lock (which can only be
chosen at creation here, and brings versioning with it) and a default
retention in COMPLIANCE mode, so even an object written without lock headers
is locked; the gateway also sends the mode and retain-until date on every PUT.

Every step is a find-or-create or a whole-configuration PUT, so a second run
changes nothing. The bucket policy and lifecycle rules are merged by statement
Sid / rule ID, so statements or rules that operators added are kept.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

DEFAULT_KMS_ALIAS = "alias/records-gateway-documents"
SCAN_STATUS_TAG = "scan-status"  # must match gateway.storage.SCAN_STATUS_TAG
CLEAN = "clean"
INSECURE_TRANSPORT_SID = "DenyInsecureTransport"
UNSCANNED_READS_SID = "DenyUnscannedObjectReads"
ABORT_MULTIPART_RULE_ID = "abort-incomplete-multipart-uploads"
CHECKPOINT_LOCK_MODE = "COMPLIANCE"
DEFAULT_CHECKPOINT_RETENTION_DAYS = 2190  # six years, as HIPAA keeps its documentation (164.316(b)(2))
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_DUMMY_CREDENTIAL = "testing"


@dataclass(frozen=True)
class BootstrapResult:
    """What the bootstrap found or made."""

    bucket: str
    region: str
    kms_key_alias: str
    kms_key_id: str
    kms_key_arn: str
    created_bucket: bool
    created_key: bool

    def as_dict(self) -> dict[str, Any]:
        """Return the result as plain JSON-ready data."""
        return asdict(self)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def ensure_kms_key(kms_client: Any, alias: str) -> tuple[dict[str, Any], bool]:
    """Return (key metadata, created) for the symmetric key behind ``alias``."""
    if not alias.startswith("alias/") or alias.startswith("alias/aws/"):
        raise ValueError("kms alias must look like alias/<name> and not be AWS-managed")
    try:
        metadata = kms_client.describe_key(KeyId=alias)["KeyMetadata"]
    except ClientError as exc:
        if _error_code(exc) != "NotFoundException":
            raise
    else:
        if metadata.get("KeyState") != "Enabled":
            raise RuntimeError(f"KMS key behind {alias} is {metadata.get('KeyState')}, not Enabled")
        return metadata, False
    metadata = kms_client.create_key(
        Description="Records Request Gateway documents bucket (SSE-KMS)",
        KeyUsage="ENCRYPT_DECRYPT",
        KeySpec="SYMMETRIC_DEFAULT",
        Tags=[{"TagKey": "app", "TagValue": "records-request-gateway"}],
    )["KeyMetadata"]
    kms_client.enable_key_rotation(KeyId=metadata["KeyId"])
    try:
        kms_client.create_alias(AliasName=alias, TargetKeyId=metadata["KeyId"])
    except ClientError as exc:
        if _error_code(exc) != "AlreadyExistsException":
            raise
        # A concurrent run won the alias: retire our spare key, use theirs.
        kms_client.schedule_key_deletion(KeyId=metadata["KeyId"], PendingWindowInDays=7)
        return kms_client.describe_key(KeyId=alias)["KeyMetadata"], False
    return metadata, True


def ensure_bucket(s3_client: Any, bucket: str, region: str, *, object_lock: bool = False) -> bool:
    """Create the bucket in ``region`` unless we already own it; return True if created."""
    try:
        s3_client.head_bucket(Bucket=bucket)
        return False
    except ClientError as exc:
        # 403 means someone else owns the name: let create_bucket say so clearly.
        if _error_code(exc) not in {"404", "NoSuchBucket", "NotFound", "403"}:
            raise
    kwargs: dict[str, Any] = {"Bucket": bucket, "ObjectOwnership": "BucketOwnerEnforced"}
    if object_lock:
        kwargs["ObjectLockEnabledForBucket"] = True
    # us-east-1 is the one region that rejects an explicit LocationConstraint.
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3_client.create_bucket(**kwargs)
    except ClientError as exc:
        if _error_code(exc) == "BucketAlreadyOwnedByYou":
            return False
        raise
    return True


def documents_bucket_policy_statements(bucket: str) -> list[dict[str, Any]]:
    """Return the two Deny statements the documents bucket must carry."""
    bucket_arn = f"arn:aws:s3:::{bucket}"
    return [
        {
            "Sid": INSECURE_TRANSPORT_SID,
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [bucket_arn, f"{bucket_arn}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
        {
            # StringNotEquals is also true when the tag is absent, so an
            # untagged object is unreadable too: fail closed.
            "Sid": UNSCANNED_READS_SID,
            "Effect": "Deny",
            "Principal": "*",
            "Action": ["s3:GetObject", "s3:GetObjectVersion"],
            "Resource": f"{bucket_arn}/*",
            "Condition": {"StringNotEquals": {f"s3:ExistingObjectTag/{SCAN_STATUS_TAG}": CLEAN}},
        },
    ]


def _merged_policy(s3_client: Any, bucket: str, ours: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    try:
        policy = json.loads(s3_client.get_bucket_policy(Bucket=bucket)["Policy"])
    except ClientError as exc:
        if _error_code(exc) != "NoSuchBucketPolicy":
            raise
        policy = {"Version": "2012-10-17", "Statement": []}
    ours = documents_bucket_policy_statements(bucket) if ours is None else ours
    sids = {s["Sid"] for s in ours}
    statements = policy.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    kept = [s for s in statements if s.get("Sid") not in sids]
    return {"Version": "2012-10-17", "Statement": kept + ours}


def _merged_lifecycle_rules(s3_client: Any, bucket: str) -> list[dict[str, Any]]:
    try:
        rules = s3_client.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", [])
    except ClientError as exc:
        if _error_code(exc) != "NoSuchLifecycleConfiguration":
            raise
        rules = []
    ours = {
        "ID": ABORT_MULTIPART_RULE_ID,
        "Filter": {"Prefix": ""},
        "Status": "Enabled",
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
    }
    return [r for r in rules if r.get("ID") != ABORT_MULTIPART_RULE_ID] + [ours]


def bootstrap_documents_bucket(
    s3_client: Any,
    kms_client: Any,
    bucket: str,
    kms_key_alias: str,
    region: str,
    *,
    apply_bucket_policy: bool = True,
) -> BootstrapResult:
    """Find or create the KMS key and bucket, then apply the production configuration.

    ``apply_bucket_policy=False`` exists only for emulators: moto (5.x)
    evaluates a conditional Deny as unconditional for object requests, so
    with the policy on it refuses every PutObject/GetObject.
    """
    key, created_key = ensure_kms_key(kms_client, kms_key_alias)
    created_bucket = ensure_bucket(s3_client, bucket, region)
    s3_client.put_bucket_ownership_controls(
        Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    )
    s3_client.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3_client.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    # The key ARN, not the alias: S3 stores what it is given,
                    # and an alias re-pointed later would silently change keys.
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": key["Arn"],
                    },
                    # One data key per bucket instead of per object: far fewer KMS calls.
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )
    s3_client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    if apply_bucket_policy:
        s3_client.put_bucket_policy(
            Bucket=bucket, Policy=json.dumps(_merged_policy(s3_client, bucket))
        )
    s3_client.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": _merged_lifecycle_rules(s3_client, bucket)}
    )
    return BootstrapResult(
        bucket=bucket,
        region=region,
        kms_key_alias=kms_key_alias,
        kms_key_id=key["KeyId"],
        kms_key_arn=key["Arn"],
        created_bucket=created_bucket,
        created_key=created_key,
    )


@dataclass(frozen=True)
class CheckpointBucketResult:
    """What the audit-checkpoint bootstrap found or made."""

    bucket: str
    region: str
    retention_days: int
    created_bucket: bool

    def as_dict(self) -> dict[str, Any]:
        """Return the result as plain JSON-ready data."""
        return asdict(self)


def _object_lock_configuration(s3_client: Any, bucket: str) -> dict[str, Any] | None:
    try:
        return s3_client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    except ClientError as exc:
        if _error_code(exc) != "ObjectLockConfigurationNotFoundError":
            raise
        return None


def bootstrap_checkpoint_bucket(
    s3_client: Any,
    bucket: str,
    region: str,
    retention_days: int = DEFAULT_CHECKPOINT_RETENTION_DAYS,
    *,
    apply_bucket_policy: bool = True,
) -> CheckpointBucketResult:
    """Find or create the Object Lock bucket of the audit trail's checkpoints and configure it.

    Encryption is SSE-S3, not KMS: checkpoints hold no PHI, and a KMS key
    scheduled for deletion would make locked checkpoints unreadable, which is
    as good as deleting them.  No lifecycle rule: nothing here ever expires.
    """
    if retention_days < 1:
        raise ValueError("retention_days must be at least 1")
    created = ensure_bucket(s3_client, bucket, region, object_lock=True)
    lock = _object_lock_configuration(s3_client, bucket)
    if not lock or lock.get("ObjectLockEnabled") != "Enabled":
        raise RuntimeError(f"bucket {bucket} exists without Object Lock; it cannot hold audit checkpoints "
                           "(choose a new bucket name, or enable Object Lock on it first)")
    s3_client.put_bucket_ownership_controls(
        Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    )
    s3_client.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3_client.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    s3_client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    wanted = {"DefaultRetention": {"Mode": CHECKPOINT_LOCK_MODE, "Days": retention_days}}
    current = (lock.get("Rule") or {}).get("DefaultRetention") or {}
    if (current.get("Mode"), current.get("Days")) != (CHECKPOINT_LOCK_MODE, retention_days):
        s3_client.put_object_lock_configuration(
            Bucket=bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": wanted}
        )
    if apply_bucket_policy:
        tls_only = [s for s in documents_bucket_policy_statements(bucket) if s["Sid"] == INSECURE_TRANSPORT_SID]
        s3_client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(_merged_policy(s3_client, bucket, tls_only)))
    return CheckpointBucketResult(
        bucket=bucket, region=region, retention_days=retention_days, created_bucket=created
    )


def read_checkpoint_bucket_configuration(s3_client: Any, bucket: str) -> dict[str, Any]:
    """Read back Object Lock, versioning, encryption, public access block and ownership."""
    configuration = read_bucket_configuration(s3_client, bucket)
    del configuration["lifecycle"]
    configuration["object_lock"] = _object_lock_configuration(s3_client, bucket)
    return configuration


def _read_or_none(call: Any, missing_codes: set[str], extract: Any) -> Any:
    try:
        return extract(call())
    except ClientError as exc:
        if _error_code(exc) in missing_codes:
            return None
        raise


def read_bucket_configuration(s3_client: Any, bucket: str) -> dict[str, Any]:
    """Read back encryption, public access block, versioning, policy and lifecycle."""
    return {
        "bucket": bucket,
        "encryption": _read_or_none(
            lambda: s3_client.get_bucket_encryption(Bucket=bucket),
            {"ServerSideEncryptionConfigurationNotFoundError"},
            lambda r: r["ServerSideEncryptionConfiguration"]["Rules"],
        ),
        "public_access_block": _read_or_none(
            lambda: s3_client.get_public_access_block(Bucket=bucket),
            {"NoSuchPublicAccessBlockConfiguration"},
            lambda r: r["PublicAccessBlockConfiguration"],
        ),
        "versioning": s3_client.get_bucket_versioning(Bucket=bucket).get("Status"),
        "policy": _read_or_none(
            lambda: s3_client.get_bucket_policy(Bucket=bucket),
            {"NoSuchBucketPolicy"},
            lambda r: json.loads(r["Policy"]),
        ),
        "lifecycle": _read_or_none(
            lambda: s3_client.get_bucket_lifecycle_configuration(Bucket=bucket),
            {"NoSuchLifecycleConfiguration"},
            lambda r: r.get("Rules", []),
        ),
        "ownership": _read_or_none(
            lambda: s3_client.get_bucket_ownership_controls(Bucket=bucket),
            {"OwnershipControlsNotFoundError"},
            lambda r: r["OwnershipControls"]["Rules"],
        ),
    }


def aws_clients(
    endpoint_url: str | None,
    region: str,
    access_key: str | None = None,
    secret_key: str | None = None,
) -> tuple[Any, Any]:
    """Return (s3, kms) clients; explicit keys win over the environment's chain."""
    session = boto3.session.Session(
        aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=region
    )
    s3_config = Config(
        signature_version="s3v4",
        retries={"mode": "standard", "max_attempts": 3},
        s3={"addressing_style": "path" if endpoint_url else "auto"},
    )
    s3 = session.client("s3", endpoint_url=endpoint_url or None, config=s3_config)
    kms = session.client("kms", endpoint_url=endpoint_url or None)
    return s3, kms


def main(argv: Sequence[str] | None = None) -> int:
    """Bootstrap the documents (and audit-checkpoint) bucket and print results and configuration as JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m infra.aws.bootstrap", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--endpoint-url", default=None, help="S3/KMS endpoint (moto); omit for AWS")
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--kms-alias", default=DEFAULT_KMS_ALIAS)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--audit-bucket", default=None,
                        help="also create the audit-checkpoint bucket (Object Lock, COMPLIANCE)")
    parser.add_argument("--audit-retention-days", type=int, default=DEFAULT_CHECKPOINT_RETENTION_DAYS,
                        help="how long each checkpoint stays locked (the bucket's default retention)")
    parser.add_argument(
        "--bucket-policy",
        choices=("auto", "apply", "skip"),
        default="auto",
        help="auto: skip on a loopback (emulator) endpoint, apply everywhere else",
    )
    args = parser.parse_args(argv)
    # A loopback endpoint is always an emulator (moto): it gets dummy
    # credentials rather than whatever ~/.aws holds, and no bucket policy,
    # which moto would enforce as a blanket deny. Real AWS uses the default
    # credential chain and always gets the policy.
    emulator = bool(args.endpoint_url) and urlparse(args.endpoint_url).hostname in _LOOPBACK_HOSTS
    access_key = secret_key = _DUMMY_CREDENTIAL if emulator else None
    apply_policy = args.bucket_policy == "apply" or (args.bucket_policy == "auto" and not emulator)
    if not apply_policy:
        print("note: bucket policy not applied (emulator endpoint)", file=sys.stderr)
    s3, kms = aws_clients(args.endpoint_url, args.region, access_key, secret_key)
    result = bootstrap_documents_bucket(
        s3, kms, args.bucket, args.kms_alias, args.region, apply_bucket_policy=apply_policy
    )
    output: dict[str, Any] = {
        "result": result.as_dict(),
        "configuration": read_bucket_configuration(s3, args.bucket),
    }
    if args.audit_bucket:
        audit = bootstrap_checkpoint_bucket(
            s3, args.audit_bucket, args.region, args.audit_retention_days, apply_bucket_policy=apply_policy
        )
        output["audit_checkpoints"] = {
            "result": audit.as_dict(),
            "configuration": read_checkpoint_bucket_configuration(s3, args.audit_bucket),
        }
    json.dump(output, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

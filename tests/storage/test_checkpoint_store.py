"""The audit-checkpoint store on moto's S3 with Object Lock: written locked, never rewritten or deleted.

What moto (5.2) does, found by these tests and kept as their assertions:
- a PUT with Object Lock headers but neither Content-MD5 nor a named checksum
  algorithm is refused (400 MissingUploadObjectWithObjectLockHeaders), as the S3
  API reference says; the store names SHA256 and sends the digest;
- If-None-Match: * on a taken name → 412 PreconditionFailed (the store's refusal);
- a plain PUT on a taken name (someone bypassing the store) succeeds and adds a
  newer version on top, as S3 does; the locked first version stays;
- DeleteObject with the VersionId of a locked version → 403 AccessDenied, with or
  without BypassGovernanceRetention; DeleteObjects → AccessDenied per key;
- DeleteObject without a version id adds a delete marker (allowed, as in S3).
- moto does NOT refuse shortening a COMPLIANCE retention with PutObjectRetention
  (real S3 does); that is a gap of the emulator, not something the store relies on.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from gateway.storage import CheckpointExists, StoredObjectMissing

NAME = "checkpoints/000000000001.json"
BODY = b'{"number":1}\n'


def _error(call, **kwargs) -> tuple[int, str]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    response = caught.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def test_a_checkpoint_is_written_locked_in_compliance_mode(checkpoint_bucket):
    store = checkpoint_bucket.store(retention_days=1)
    before = datetime.now(UTC)
    store.put(NAME, BODY)

    [stored] = store.list()
    assert (stored.name, stored.versions, stored.delete_marked) == (NAME, 1, False)
    assert store.get(NAME) == BODY
    head = checkpoint_bucket.s3_client.head_object(Bucket=checkpoint_bucket.bucket, Key=NAME,
                                                   VersionId=stored.first_version, ChecksumMode="ENABLED")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert before + timedelta(hours=23) < head["ObjectLockRetainUntilDate"] < before + timedelta(days=1, hours=1)
    assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(BODY).digest()).decode()


def test_the_store_refuses_to_overwrite_a_checkpoint(checkpoint_bucket):
    store = checkpoint_bucket.store()
    store.put(NAME, BODY)
    with pytest.raises(CheckpointExists):
        store.put(NAME, b'{"number":1,"forged":true}\n')
    [stored] = store.list()
    assert stored.versions == 1 and store.get(NAME) == BODY


def test_a_raw_overwrite_only_adds_a_version_and_the_first_one_still_counts(checkpoint_bucket):
    store, s3 = checkpoint_bucket.store(), checkpoint_bucket.s3_client
    store.put(NAME, BODY)
    # Someone with s3:PutObject, bypassing the store's If-None-Match: S3 takes it as a newer version.
    s3.put_object(Bucket=checkpoint_bucket.bucket, Key=NAME, Body=b"forged", ChecksumAlgorithm="SHA256")
    [stored] = store.list()
    assert stored.versions == 2
    assert store.get(NAME) == BODY  # the first, locked version
    assert s3.get_object(Bucket=checkpoint_bucket.bucket, Key=NAME)["Body"].read() == b"forged"


def test_object_lock_refuses_deleting_a_checkpoint_version(checkpoint_bucket):
    store, s3, bucket = checkpoint_bucket.store(), checkpoint_bucket.s3_client, checkpoint_bucket.bucket
    store.put(NAME, BODY)
    [stored] = store.list()
    version = stored.first_version

    assert _error(s3.delete_object, Bucket=bucket, Key=NAME, VersionId=version) == (403, "AccessDenied")
    assert _error(s3.delete_object, Bucket=bucket, Key=NAME, VersionId=version,
                  BypassGovernanceRetention=True) == (403, "AccessDenied")
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": NAME, "VersionId": version}]})
    assert [e["Code"] for e in result["Errors"]] == ["AccessDenied"]

    # Without a version id S3 only hides the name behind a delete marker; the store sees through it.
    assert s3.delete_object(Bucket=bucket, Key=NAME)["DeleteMarker"] is True
    [stored] = store.list()
    assert stored.delete_marked and stored.versions == 1
    assert store.get(NAME) == BODY


def test_a_put_without_a_checksum_is_refused_by_object_lock(checkpoint_bucket):
    # What the store's ChecksumAlgorithm/ChecksumSHA256 arguments are for (S3 API reference, PutObject).
    s3 = checkpoint_bucket.s3_client
    until = datetime.now(UTC) + timedelta(days=1)
    assert _error(s3.put_object, Bucket=checkpoint_bucket.bucket, Key="checkpoints/x.json", Body=BODY,
                  ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until,
                  ChecksumSHA256=base64.b64encode(hashlib.sha256(BODY).digest()).decode()) == (
        400, "MissingUploadObjectWithObjectLockHeaders")


def test_listing_after_a_name_and_missing_names(checkpoint_bucket):
    store = checkpoint_bucket.store()
    names = [f"checkpoints/{n:012d}.json" for n in (1, 2, 3)]
    for name in names:
        store.put(name, name.encode())
    assert [s.name for s in store.list()] == names
    assert [s.name for s in store.list(after=names[0])] == names[1:]
    assert store.list(after=names[-1]) == []
    with pytest.raises(StoredObjectMissing):
        store.get("checkpoints/000000000009.json")
    with pytest.raises(ValueError):
        store.put("elsewhere/000000000001.json", BODY)

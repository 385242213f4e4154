"""Where audit checkpoints live outside the database: the CheckpointStore protocol, S3 and in-memory.

The S3 store writes every checkpoint once, under Object Lock in COMPLIANCE mode
with a retain-until date: until then no one, the account's root user included,
can delete that object version or shorten its retention.  A PUT to an existing
name is refused here (``If-None-Match: *``), but S3 itself would accept one
from someone else and simply add a newer version on top; a DELETE without a
version id adds a delete marker.  Neither touches the locked version, so the
store always reads the version written *first* under each name, lists through
delete markers, and reports both kinds of meddling for `gateway audit verify`.

A leaf module: it imports nothing from other gateway domains.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from gateway.clock import utcnow
from gateway.storage.s3_upload import translated
from gateway.storage.store import StorageUnavailable, StoredObjectMissing

PREFIX = "checkpoints/"
LOCK_MODE = "COMPLIANCE"
# S3 answers 412 to If-None-Match when the name exists, 409 when a concurrent conditional write won.
_TAKEN_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})


class CheckpointExists(Exception):
    """A checkpoint with that name was already written (by another writer); nothing was changed."""


@dataclass(frozen=True)
class StoredCheckpoint:
    """One name in the store and what happened to it since it was written."""

    name: str
    # The version written first: the one that counts (later ones are overwrite attempts).
    first_version: str | None
    versions: int = 1
    # Someone "deleted" it: a delete marker hides the name, the locked version is still there.
    delete_marked: bool = False


class CheckpointStore(Protocol):
    """Write-once storage for signed checkpoints."""

    def put(self, name: str, body: bytes) -> None:
        """Write a new checkpoint; raise CheckpointExists if the name is taken."""

    def list(self, after: str | None = None) -> list[StoredCheckpoint]:
        """Every checkpoint name (sorted), delete-marked ones included; only names after `after`."""

    def get(self, name: str, version: str | None = None) -> bytes:
        """The first-written version of a checkpoint (or the given version)."""


def _check_name(name: str) -> str:
    if not name.startswith(PREFIX) or "/" in name[len(PREFIX):] or len(name) > 200:
        raise ValueError(f"checkpoint names live directly under {PREFIX}")
    return name


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class S3CheckpointStore:
    """CheckpointStore over one S3 bucket created with Object Lock (infra/aws/bootstrap.py)."""

    def __init__(self, client: Any, bucket: str, retention: timedelta,
                 clock: Callable[[], datetime] = utcnow) -> None:
        if retention <= timedelta(0):
            raise ValueError("retention must be positive")
        self.client, self.bucket, self.retention, self.clock = client, bucket, retention, clock

    @classmethod
    def build(cls, endpoint_url: str | None, region: str, bucket: str, retention_days: int,
              access_key: str | None = None, secret_key: str | None = None, *,
              connect_timeout: float = 3.0, read_timeout: float = 10.0,
              max_attempts: int = 3) -> S3CheckpointStore:
        """Create the boto3 client (timeouts, standard retries, SigV4) and the store."""
        config = Config(
            signature_version="s3v4",
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"mode": "standard", "max_attempts": max_attempts},
            s3={"addressing_style": "path" if endpoint_url else "auto"},
        )
        session = boto3.session.Session(aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                                        region_name=region)
        client = session.client("s3", endpoint_url=endpoint_url or None, config=config)
        return cls(client, bucket, timedelta(days=retention_days))

    def put(self, name: str, body: bytes) -> None:
        """PUT once, locked in COMPLIANCE mode until now + retention."""
        _check_name(name)
        with translated("put_checkpoint"):
            try:
                self.client.put_object(
                    Bucket=self.bucket, Key=name, Body=body, ContentType="application/json",
                    IfNoneMatch="*",
                    ObjectLockMode=LOCK_MODE,
                    ObjectLockRetainUntilDate=self.clock() + self.retention,
                    # S3 refuses an Object Lock PUT without Content-MD5 or x-amz-sdk-checksum-algorithm;
                    # naming the algorithm and sending the digest satisfies it and checks the bytes.
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=base64.b64encode(hashlib.sha256(body).digest()).decode("ascii"),
                )
            except ClientError as error:
                if _code(error) in _TAKEN_CODES:
                    raise CheckpointExists(name) from error
                raise

    def list(self, after: str | None = None) -> list[StoredCheckpoint]:
        """Every name under the prefix, from the version listing (which sees through delete markers)."""
        versions: dict[str, list[str]] = {}
        marked: set[str] = set()
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": PREFIX}
        if after:
            kwargs["KeyMarker"] = after
        with translated("list_checkpoints"):
            for page in self.client.get_paginator("list_object_versions").paginate(**kwargs):
                # Within one name, S3 lists versions newest first.
                for entry in page.get("Versions", []):
                    versions.setdefault(entry["Key"], []).append(entry["VersionId"])
                for entry in page.get("DeleteMarkers", []):
                    if entry.get("IsLatest"):
                        marked.add(entry["Key"])
        return [StoredCheckpoint(name, ids[-1], len(ids), name in marked)
                for name, ids in sorted(versions.items()) if after is None or name > after]

    def get(self, name: str, version: str | None = None) -> bytes:
        """Read one version; by default the oldest, whatever was written or marked on top of it."""
        _check_name(name)
        if version is None:
            version = self._first_version(name)
        with translated("get_checkpoint", name):
            response = self.client.get_object(Bucket=self.bucket, Key=name, VersionId=version)
            body = response["Body"]
            try:
                return body.read()
            finally:
                body.close()

    def _first_version(self, name: str) -> str:
        with translated("list_checkpoint", name):
            response = self.client.list_object_versions(Bucket=self.bucket, Prefix=name)
        ids = [v["VersionId"] for v in response.get("Versions", []) if v["Key"] == name]
        if not ids:
            raise StoredObjectMissing(f"no checkpoint {name}")
        return ids[-1]

    def ping(self) -> None:
        """Raise StorageUnavailable unless the bucket answers."""
        with translated("ping_checkpoints"):
            self.client.head_bucket(Bucket=self.bucket)


@dataclass
class _Name:
    versions: list[bytes] = field(default_factory=list)
    delete_marked: bool = False


class InMemoryCheckpointStore:
    """CheckpointStore for unit tests; behaves like the locked bucket, with hooks to play the attacker."""

    def __init__(self) -> None:
        self.names: dict[str, _Name] = {}
        self.available = True
        self._lock = threading.Lock()

    def _check_available(self) -> None:
        if not self.available:
            raise StorageUnavailable("in-memory checkpoint store marked unavailable")

    def put(self, name: str, body: bytes) -> None:
        """Write once; a taken name raises CheckpointExists."""
        self._check_available()
        _check_name(name)
        with self._lock:
            if name in self.names:
                raise CheckpointExists(name)
            self.names[name] = _Name([bytes(body)])

    def list(self, after: str | None = None) -> list[StoredCheckpoint]:
        """Every name, sorted, with its version count and delete marker."""
        self._check_available()
        with self._lock:
            return [StoredCheckpoint(name, "0", len(entry.versions), entry.delete_marked)
                    for name, entry in sorted(self.names.items()) if after is None or name > after]

    def get(self, name: str, version: str | None = None) -> bytes:
        """The first-written (or the numbered) version."""
        self._check_available()
        with self._lock:
            entry = self.names.get(name)
            if entry is None:
                raise StoredObjectMissing(f"no checkpoint {name}")
            return entry.versions[int(version or 0)]

    # -- what someone with write access to the bucket could still do (tests play the attacker) ----

    def overwrite(self, name: str, body: bytes) -> None:
        """A plain PUT on top of an existing name: a newer version, the first one kept (as S3 does)."""
        self.names.setdefault(name, _Name()).versions.append(bytes(body))

    def mark_deleted(self, name: str) -> None:
        """A DELETE without a version id: a delete marker, the locked version kept (as S3 does)."""
        self.names[name].delete_marked = True

    def destroy(self, name: str) -> None:
        """Remove every version: what Object Lock prevents, to show verify would notice anyway."""
        del self.names[name]

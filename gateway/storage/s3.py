"""S3 DocumentStore (boto3): SSE-KMS objects, tag-gated reads, versioned deletes.

Uploads are in gateway/storage/s3_upload.py, which also explains where the
SHA-256 of each document lives (the ``sha256`` object tag) and why.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from gateway.clock import utcnow
from gateway.storage.s3_upload import MISSING_CODES, S3StagedUpload, Written, tag_set, translated
from gateway.storage.store import (
    CLEAN,
    MAX_DOWNLOAD_URL_SECONDS,
    PENDING,
    SCAN_STATUS_TAG,
    StorageUnavailable,
    StoredObjectMissing,
    check_content_type,
    check_expires_in,
    content_disposition,
    default_filename,
    stored_disposition,
)

MiB = 1024 * 1024
DEFAULT_PART_SIZE = 8 * MiB
MIN_PART_SIZE = 5 * MiB  # S3 rejects smaller parts, except the last one
READ_CHUNK_SIZE = 64 * 1024


def _loopback_payload_signing(endpoint_url: str | None) -> dict[str, bool]:
    """Part bodies unsigned over plain HTTP to this machine (a local emulator), as over HTTPS to S3.

    Over HTTPS botocore sends an upload's parts with an unsigned, streamed payload and a CRC32 trailer (TLS and
    the checksum carry them), and never hashes the body for the signature.  Over plain HTTP it would SHA-256
    every byte of every part once more, on the CPUs clamd's scan needs: on moto that was 500 MiB hashed per
    500 MiB upload, which production never does.  Only for loopback, where no network lies between the two;
    a plain-HTTP endpoint elsewhere keeps signed payloads.
    """
    parts = urlsplit(endpoint_url or "")
    if parts.scheme != "http":
        return {}
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return {"payload_signing_enabled": False} if loopback else {}


class S3DocumentStore:
    """DocumentStore over one versioned, SSE-KMS S3 bucket."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        kms_key_id: str,
        *,
        part_size: int = DEFAULT_PART_SIZE,
        max_parts_in_flight: int = 2,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        if max_parts_in_flight < 1:
            raise ValueError("max_parts_in_flight must be at least 1")
        self.client = client
        self.bucket = bucket
        self.kms_key_id = kms_key_id
        self.part_size = part_size
        self.max_parts_in_flight = max_parts_in_flight

    @classmethod
    def build(
        cls,
        endpoint_url: str | None,
        region: str,
        bucket: str,
        kms_key_id: str,
        access_key: str | None = None,
        secret_key: str | None = None,
        *,
        connect_timeout: float = 3.0,
        read_timeout: float = 20.0,
        max_attempts: int = 3,
        part_size: int = DEFAULT_PART_SIZE,
        max_parts_in_flight: int = 2,
    ) -> S3DocumentStore:
        """Create the boto3 client (timeouts, standard retries, SigV4) and the store."""
        config = Config(
            signature_version="s3v4",
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"mode": "standard", "max_attempts": max_attempts},
            # Part uploads run on their own threads next to the caller's requests.
            max_pool_connections=max(10, max_parts_in_flight + 4),
            # Local emulators (moto, MinIO) answer on an IP or localhost where
            # virtual-hosted bucket names cannot resolve; real S3 keeps "auto".
            s3={"addressing_style": "path" if endpoint_url else "auto", **_loopback_payload_signing(endpoint_url)},
        )
        # A private session: no shared default session across threads, and
        # explicit keys (when given) win over whatever the environment holds.
        session = boto3.session.Session(
            aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=region
        )
        client = session.client("s3", endpoint_url=endpoint_url or None, config=config)
        return cls(
            client, bucket, kms_key_id, part_size=part_size, max_parts_in_flight=max_parts_in_flight
        )

    # -- writing -----------------------------------------------------------

    def begin_upload(self, key: str, *, content_type: str, filename: str | None = None) -> S3StagedUpload:
        """Start writing a new pending object under ``key``, stored to be served as attachment ``filename``."""
        if not key or key.startswith("/") or len(key.encode("utf-8")) > 1024:
            raise ValueError("key must be a relative S3 key of at most 1024 bytes")
        content_type = check_content_type(content_type)
        return S3StagedUpload(self, key, content_type, stored_disposition(filename, content_type))

    def encryption_args(self) -> dict[str, Any]:
        """Return the SSE-KMS request arguments every write carries."""
        return {
            "ServerSideEncryption": "aws:kms",
            "SSEKMSKeyId": self.kms_key_id,
            "BucketKeyEnabled": True,
        }

    def promote(self, key: str, *, written: Written | None = None) -> None:
        """Tag the object scan-status=clean, keeping its other tags (sha256).

        `written` (the staged upload's own record of the version and tags it wrote) saves reading them back.
        """
        with translated("promote", key):
            if written is None:
                current = self.client.get_object_tagging(Bucket=self.bucket, Key=key)
                tags = {t["Key"]: t["Value"] for t in current.get("TagSet", [])}
                version_id = current.get("VersionId")
            else:
                tags, version_id = dict(written.tags), written.version_id
            tags[SCAN_STATUS_TAG] = CLEAN
            version = {"VersionId": version_id} if version_id else {}
            self.client.put_object_tagging(
                Bucket=self.bucket, Key=key, Tagging=tag_set(tags), **version
            )

    def delete(self, key: str) -> None:
        """Remove every version and delete marker of ``key``; no error if absent."""
        with translated("delete", key):
            doomed = []
            paginator = self.client.get_paginator("list_object_versions")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=key):
                for entry in page.get("Versions", []) + page.get("DeleteMarkers", []):
                    # Prefix also matches longer keys; only the exact key goes.
                    if entry["Key"] == key:
                        doomed.append({"Key": key, "VersionId": entry["VersionId"]})
            for start in range(0, len(doomed), 1000):
                batch = doomed[start : start + 1000]
                response = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
                errors = response.get("Errors") or []
                if errors:
                    codes = sorted({str(e.get("Code")) for e in errors})
                    raise StorageUnavailable(
                        f"S3 delete left {len(errors)} versions ({', '.join(codes)})"
                    )

    # -- reading -----------------------------------------------------------

    def _promoted_version(self, operation: str, key: str) -> dict[str, str]:
        # Reads are pinned to the version whose tag said "clean", so a version
        # written after the check can never slip through.
        with translated(operation, key):
            tagging = self.client.get_object_tagging(Bucket=self.bucket, Key=key)
        tags = {t["Key"]: t["Value"] for t in tagging.get("TagSet", [])}
        if tags.get(SCAN_STATUS_TAG) != CLEAN:
            raise StoredObjectMissing(f"{operation}: object at {key} is not promoted")
        return {"VersionId": tagging["VersionId"]} if tagging.get("VersionId") else {}

    def download_url(
        self,
        key: str,
        *,
        content_type: str,
        expires_in: int = MAX_DOWNLOAD_URL_SECONDS,
    ) -> str:
        """Return a presigned attachment GET for a promoted object (never log it).

        The URL names no file: S3 serves the Content-Disposition stored with
        the object at upload.  An object stored before names were (it has
        none) is served as an attachment under a neutral name instead.
        """
        check_expires_in(expires_in)
        content_type = check_content_type(content_type)
        params = {
            "Bucket": self.bucket,
            "Key": key,
            "ResponseContentType": content_type,
            # Records must not linger in shared or browser caches.
            "ResponseCacheControl": "private, no-store",
        }
        # In AWS the bucket policy would make such a link answer 403 anyway;
        # refusing here gives a clear error, and covers emulators that run
        # without the policy.
        version = self._promoted_version("download_url", key)
        params.update(version)
        with translated("download_url", key):
            head = self.client.head_object(Bucket=self.bucket, Key=key, **version)
            if not str(head.get("ContentDisposition") or "").startswith("attachment"):
                params["ResponseContentDisposition"] = content_disposition(default_filename(content_type))
            return self.client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=expires_in
            )

    def open(self, key: str) -> Iterator[bytes]:
        """Stream a promoted object in chunks; raise StoredObjectMissing otherwise."""
        version = self._promoted_version("open", key)
        with translated("open", key):
            response = self.client.get_object(Bucket=self.bucket, Key=key, **version)
        return _stream_body(response["Body"])

    def ping(self) -> None:
        """Raise StorageUnavailable unless the bucket answers HeadBucket."""
        with translated("ping"):
            self.client.head_bucket(Bucket=self.bucket)

    def sweep_staging(self, older_than: timedelta) -> int:
        """Abort old multipart uploads and delete old pending objects; return the count."""
        if older_than < timedelta(0):
            raise ValueError("older_than must not be negative")
        cutoff = utcnow() - older_than
        removed = 0
        with translated("sweep_staging"):
            uploads = self.client.get_paginator("list_multipart_uploads")
            for page in uploads.paginate(Bucket=self.bucket):
                for upload in page.get("Uploads", []):
                    if upload["Initiated"] < cutoff and self.abort_multipart(
                        upload["Key"], upload["UploadId"]
                    ):
                        removed += 1
            objects = self.client.get_paginator("list_objects_v2")
            for page in objects.paginate(Bucket=self.bucket):
                for entry in page.get("Contents", []):
                    # Tag check then delete is not atomic; with a cutoff of
                    # hours, a scan finishing in between is not a real case.
                    if entry["LastModified"] < cutoff and self._is_pending(entry["Key"]):
                        self.delete(entry["Key"])
                        removed += 1
        return removed

    def abort_multipart(self, key: str, upload_id: str) -> bool:
        """Abort one multipart upload; False if it was already gone."""
        with translated("abort_multipart_upload"):
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
                    return False  # finished or aborted meanwhile
                raise
        return True

    def _is_pending(self, key: str) -> bool:
        try:
            tagging = self.client.get_object_tagging(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in MISSING_CODES:
                return False  # deleted since it was listed
            raise
        tags = {t["Key"]: t["Value"] for t in tagging.get("TagSet", [])}
        return tags.get(SCAN_STATUS_TAG) == PENDING


def _stream_body(body: Any) -> Iterator[bytes]:
    # A generator so the connection is released when the caller stops early.
    try:
        with translated("read"):
            yield from body.iter_chunks(READ_CHUNK_SIZE)
    finally:
        body.close()

"""Document storage: the DocumentStore protocol and its S3 and in-memory implementations.

A leaf package: it imports nothing from other gateway domains.
"""

from gateway.storage.memory import InMemoryDocumentStore, InMemoryStagedUpload
from gateway.storage.s3 import S3DocumentStore
from gateway.storage.s3_upload import S3StagedUpload
from gateway.storage.store import (
    CLEAN,
    MAX_DOWNLOAD_URL_SECONDS,
    PENDING,
    SCAN_STATUS_TAG,
    SHA256_TAG,
    DocumentStore,
    StagedUpload,
    StorageUnavailable,
    StoredObjectMissing,
    content_disposition,
    default_filename,
    sanitise_filename,
    stored_disposition,
)

__all__ = [
    "CLEAN",
    "MAX_DOWNLOAD_URL_SECONDS",
    "PENDING",
    "SCAN_STATUS_TAG",
    "SHA256_TAG",
    "DocumentStore",
    "InMemoryDocumentStore",
    "InMemoryStagedUpload",
    "S3DocumentStore",
    "S3StagedUpload",
    "StagedUpload",
    "StorageUnavailable",
    "StoredObjectMissing",
    "content_disposition",
    "default_filename",
    "sanitise_filename",
    "stored_disposition",
]

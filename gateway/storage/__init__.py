"""Object storage: the DocumentStore and CheckpointStore protocols, their S3 and in-memory implementations.

A leaf package: it imports nothing from other gateway domains.
"""

from gateway.storage.checkpoints import (
    CheckpointExists,
    CheckpointStore,
    InMemoryCheckpointStore,
    S3CheckpointStore,
    StoredCheckpoint,
)
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
    "CheckpointExists",
    "CheckpointStore",
    "DocumentStore",
    "InMemoryCheckpointStore",
    "InMemoryDocumentStore",
    "InMemoryStagedUpload",
    "S3CheckpointStore",
    "S3DocumentStore",
    "S3StagedUpload",
    "StagedUpload",
    "StorageUnavailable",
    "StoredCheckpoint",
    "StoredObjectMissing",
    "content_disposition",
    "default_filename",
    "sanitise_filename",
    "stored_disposition",
]

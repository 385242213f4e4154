"""Content sniffing: the document type by magic bytes at offset 0, never by name or header."""

from __future__ import annotations

# The longest signature below (PNG) is 8 bytes; callers read this many first.
MAGIC_BYTES_NEEDED = 8

# Only offset 0 counts: a signature found later (a PDF header after junk, a
# ZIP prefix) is exactly what polyglot files rely on, so it is never searched for.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "application/pdf"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)


def sniff_content_type(head: bytes) -> str | None:
    """The accepted media type whose magic bytes start head, or None for anything else."""
    head = bytes(head[:MAGIC_BYTES_NEEDED])
    for magic, content_type in _SIGNATURES:
        if head.startswith(magic):
            return content_type
    return None

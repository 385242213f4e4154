"""PDF checks run on the spooled file after a clean virus verdict, in bounded memory."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import BinaryIO, ClassVar

from pypdf import PdfReader, apply_configuration
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, NameObject

PDF_WHITESPACE = b"\x00\t\n\x0c\r "
EOF_MARKER = b"%%EOF"
HEADER_WINDOW = 1024
TRAILER_CHUNK = 64 * 1024
# The largest single read pypdf may make on our file. Bigger reads only happen
# when pypdf repairs a damaged file by loading it whole, or parses a big stream
# we meant to avoid; on a 500 MB upload either would blow the memory budget.
MAX_READ = 16 * 1024 * 1024
# Decoded size cap for the streams pypdf must decode (object and xref streams):
# real ones are kilobytes, a decompression bomb is not.
MAX_DECODED = 16 * 1024 * 1024
# Every resolved object stays in pypdf's cache; a scanned 500-page PDF has
# about a thousand reachable, so this only stops crafted files.
MAX_WALK_OBJECTS = 100_000

_PYPDF_LIMITS = {
    "maximum_declared_stream_length": MAX_READ,
    "array_based_stream_maximum_output_length": MAX_DECODED,
    "zlib_maximum_output_length": MAX_DECODED,
    "lzw_maximum_output_length": MAX_DECODED,
    "run_length_maximum_output_length": MAX_DECODED,
    "brotli_maximum_output_length": MAX_DECODED,
}

# Keys that mean script, launching programs, embedded payloads or forms that
# run code; seen as a key they are rejected before their value is resolved.
FORBIDDEN_KEYS = frozenset(
    {"/JavaScript", "/JS", "/Launch", "/EmbeddedFile", "/EmbeddedFiles", "/EF", "/XFA", "/RichMedia"}
)
# Action types (/S) that run code, start programs or send data out.
FORBIDDEN_ACTIONS = frozenset({"/JavaScript", "/Launch", "/ImportData", "/SubmitForm", "/RichMediaExecute"})
# /Type or /Subtype values of objects that carry a payload by their nature.
FORBIDDEN_TYPES = frozenset({"/EmbeddedFile", "/FileAttachment", "/RichMedia"})
# Keys leading to page content, images, fonts or other bulk data (or back up
# the tree), none of which can hold an action: not walking them keeps the
# check fast and keeps image and content stream bytes out of memory.
SKIPPED_KEYS = frozenset(
    {
        "/Contents",  # page content streams (on annotations: a text string)
        "/Resources",  # fonts, images, form XObjects: the bulk of a scanned PDF
        "/Thumb",  # thumbnail image stream
        "/Parent",  # back-pointer: everything above was reached from the root
        "/P",  # annotation/structure back-pointer to its page or parent
        "/Metadata",  # XMP stream (XML, no actions)
        "/StructTreeRoot",  # tagged-PDF structure: can be huge, links annotations already reached via pages
        "/PieceInfo",  # private application data
        "/AP",  # annotation appearance streams (form XObjects: content)
        "/DR",  # AcroForm default resources (fonts)
        "/DestOutputProfile",  # ICC colour profile stream in /OutputIntents
    }
)

# Only these can hold (or lead to) a dictionary; numbers, strings and names cannot.
_CONTAINERS = (DictionaryObject, ArrayObject, IndirectObject)
_MORE_PDF = re.compile(rb"\d+[\x00\t\n\x0c\r ]+\d+[\x00\t\n\x0c\r ]+obj|xref|trailer|startxref")
_HEADER = re.compile(rb"%PDF-(\d+\.\d+)")


class PdfProblem(Exception):
    """A PDF the gateway refuses; code is the stable API error code, the message is safe to show."""

    code: ClassVar[str] = "FILE_CORRUPT"


class PdfEncrypted(PdfProblem):
    """Encrypted with any password, owner-only included: records teams cannot process it reliably."""

    code = "PDF_ENCRYPTED"


class PdfActiveContent(PdfProblem):
    """Script, launch/submit actions, embedded files, XFA or rich media; feature names which."""

    code = "PDF_ACTIVE_CONTENT"

    def __init__(self, feature: str) -> None:
        """feature is the offending PDF name, e.g. "/JavaScript"."""
        self.feature = str(feature)
        super().__init__(f"PDF contains active content ({self.feature})")


class PdfCorrupt(PdfProblem):
    """Truncated, unparseable, or too damaged to check in bounded memory."""

    code = "FILE_CORRUPT"


class PdfPolyglot(PdfProblem):
    """Non-PDF data before the header or after the last %%EOF (e.g. a ZIP appended)."""

    code = "FILE_POLYGLOT"


@dataclass(frozen=True)
class PdfReport:
    """What a PDF that passed every check looks like."""

    pages: int
    version: str | None


def inspect_pdf(path: str | os.PathLike[str]) -> PdfReport:
    """Check a spooled PDF (trailer, encryption, active content) and count its pages; raises PdfProblem."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        version = _check_header(fh)
        _check_trailer(fh, size)
        bounded = _BoundedReader(fh, size, MAX_READ)
        with apply_configuration(**_PYPDF_LIMITS):
            pages = _check_structure(bounded)
    return PdfReport(pages=pages, version=version)


def _check_header(fh: BinaryIO) -> str | None:
    """The header version; junk before the header is a polyglot, no header at all is corrupt."""
    fh.seek(0)
    head = fh.read(HEADER_WINDOW)
    if not head.startswith(b"%PDF-"):
        # Readers accept a header anywhere in the first kilobyte, which is
        # how another format's bytes get in front of a "PDF".
        if b"%PDF-" in head:
            raise PdfPolyglot("data before the PDF header")
        raise PdfCorrupt("no PDF header")
    match = _HEADER.match(head)
    return match[1].decode("ascii") if match else None


def _check_trailer(fh: BinaryIO, size: int) -> None:
    """Reject a file with no %%EOF, or with anything but whitespace after the last one."""
    eof = _find_last_eof(fh, size)
    if eof is None:
        raise PdfCorrupt("PDF is truncated (no %%EOF)")
    extra = _first_non_whitespace(fh, eof + len(EOF_MARKER))
    if extra is None:
        return
    fh.seek(extra)
    if _MORE_PDF.match(fh.read(64)):
        raise PdfCorrupt("PDF is truncated (incomplete incremental update)")
    raise PdfPolyglot("data after the end of the PDF")


def _find_last_eof(fh: BinaryIO, size: int, chunk_size: int = TRAILER_CHUNK) -> int | None:
    """Offset of the last %%EOF, reading backwards chunk by chunk."""
    keep = len(EOF_MARKER) - 1
    end = size
    # The first bytes of the chunk after this one: a marker that starts in
    # this chunk may end there.
    carry = b""
    while end > 0:
        start = max(0, end - chunk_size)
        fh.seek(start)
        chunk = fh.read(end - start)
        found = (chunk + carry).rfind(EOF_MARKER)
        if found >= 0:
            return start + found
        carry = chunk[:keep]
        end = start
    return None


def _first_non_whitespace(fh: BinaryIO, offset: int) -> int | None:
    """Offset of the first byte from offset on that is not PDF whitespace."""
    fh.seek(offset)
    while chunk := fh.read(TRAILER_CHUNK):
        rest = chunk.lstrip(PDF_WHITESPACE)
        if rest:
            return offset + len(chunk) - len(rest)
        offset += len(chunk)
    return None


def _check_structure(stream: _BoundedReader) -> int:
    """Open with pypdf, refuse encryption and active content, return the page count."""
    try:
        reader = _CheckingReader(stream, strict=False)  # type: ignore[arg-type]
        try:
            if reader.is_encrypted:
                raise PdfEncrypted("PDF is encrypted")
            _walk_for_active_content(reader, reader.trailer.raw_get("/Root"))
            pages = len(reader.pages)
        finally:
            # Drops pypdf's object cache now rather than whenever the reader is collected.
            reader.close()
    except PdfProblem:
        raise
    except MemoryError:
        raise
    except Exception as exc:
        if stream.refused:
            # pypdf may swallow the refusal and fail later on a half-read file.
            raise _too_damaged() from None
        # pypdf messages can quote file bytes: keep only the exception type.
        raise PdfCorrupt(f"unreadable PDF structure ({type(exc).__name__})") from None
    if stream.refused:
        raise _too_damaged()
    if pages < 1:
        raise PdfCorrupt("PDF has no pages")
    return pages


def _walk_for_active_content(reader: PdfReader, root: object) -> None:
    """Visit the catalog's dictionaries and arrays, never page content or image streams."""
    seen: set[tuple[int, int]] = set()
    stack = [root]
    resolved = 0
    while stack:
        obj = stack.pop()
        if isinstance(obj, IndirectObject):
            ref = (obj.idnum, obj.generation)
            if ref in seen:
                continue
            seen.add(ref)
            if not _is_defined(reader, obj):
                # An undefined object is null (ISO 32000 7.3.10); resolving it
                # makes pypdf search the whole file for it.
                continue
            resolved += 1
            if resolved > MAX_WALK_OBJECTS:
                raise PdfCorrupt("PDF has too many objects to check")
            obj = obj.get_object()
        if isinstance(obj, DictionaryObject):
            # A StreamObject is a DictionaryObject: only its dictionary is
            # looked at, its data is never decoded.
            _check_dictionary(reader, obj)
            stack.extend(
                value
                for key, value in dict.items(obj)
                if key not in SKIPPED_KEYS and isinstance(value, _CONTAINERS)
            )
        elif isinstance(obj, ArrayObject):
            stack.extend(value for value in list.__iter__(obj) if isinstance(value, _CONTAINERS))


def _check_dictionary(reader: PdfReader, obj: DictionaryObject) -> None:
    """Raise PdfActiveContent if this dictionary is, or names, active content."""
    for key in obj:
        if key in FORBIDDEN_KEYS:
            raise PdfActiveContent(key)
    action = _resolve(reader, obj.get("/S"))
    if isinstance(action, NameObject) and action in FORBIDDEN_ACTIONS:
        raise PdfActiveContent(action)
    for key in ("/Type", "/Subtype"):
        kind = _resolve(reader, obj.get(key))
        if isinstance(kind, NameObject) and kind in FORBIDDEN_TYPES:
            raise PdfActiveContent(kind)
    # A destination array just opens a page; an action dictionary can do
    # anything when the document opens.
    if _is_action(reader, obj.get("/OpenAction")):
        raise PdfActiveContent("/OpenAction")
    # /AA maps triggers (page open, keystroke, field change...) to actions
    # that run without the reader clicking anything.
    additional = _resolve(reader, obj.get("/AA"))
    if isinstance(additional, DictionaryObject) and any(_is_action(reader, v) for v in dict.values(additional)):
        raise PdfActiveContent("/AA")


def _is_action(reader: PdfReader, value: object) -> bool:
    """True if value is (a reference to) an action dictionary."""
    value = _resolve(reader, value)
    return isinstance(value, DictionaryObject) and "/S" in value


def _resolve(reader: PdfReader, value: object) -> object:
    """value itself, or the object it refers to (None if undefined)."""
    if isinstance(value, IndirectObject):
        return value.get_object() if _is_defined(reader, value) else None
    return value


def _is_defined(reader: PdfReader, ref: IndirectObject) -> bool:
    """True if the xref (or an object stream) says where ref lives."""
    if ref.generation == 0 and ref.idnum in reader.xref_objStm:
        return True
    return ref.idnum in reader.xref.get(ref.generation, {})


class _CheckingReader(PdfReader):
    """A PdfReader that never tries to decrypt."""

    def _handle_encryption(self, password: str | bytes | None) -> None:
        # Every encrypted PDF is refused, so deriving keys is wasted work and
        # a handler pypdf lacks (e.g. /Adobe.PubSec) must not read as corrupt.
        return None


def _too_damaged() -> PdfCorrupt:
    """The error for a file pypdf could only repair by reading it whole."""
    return PdfCorrupt("PDF is too damaged to check in bounded memory")


class _BoundedReader:
    """A read-only file for pypdf that refuses any single read over limit bytes."""

    mode = "rb"

    def __init__(self, raw: BinaryIO, size: int, limit: int) -> None:
        """raw is an open binary file of size bytes."""
        self._raw = raw
        self._size = size
        self._limit = limit
        self.refused = False

    def read(self, n: int | None = -1) -> bytes:
        """Read like a file, unless it would return more than limit bytes."""
        if n is None or n < 0 or n > self._limit:
            remaining = max(0, self._size - self._raw.tell())
            wanted = remaining if n is None or n < 0 else min(n, remaining)
            if wanted > self._limit:
                self.refused = True
                raise _too_damaged()
        return self._raw.read(n)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move like a file."""
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        """Position like a file."""
        return self._raw.tell()

    def close(self) -> None:
        """The owner of the file closes it."""

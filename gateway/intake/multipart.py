"""A streaming multipart/form-data reader: parts are consumed as they arrive, never buffered whole.

Werkzeug's own form parser spools every file before the view runs; here the
view pulls one part at a time and streams a file part's bytes straight into
the scanner and storage.  Everything else in the body is capped while it
streams (API.md v1.1, "Bodies"): the decoder holds at most one cap's worth of
preamble, part headers or epilogue, a non-file field is refused past its cap
before more of it is read, and an eleventh part is refused on sight, all with
413 BODY_TOO_LARGE.  Memory stays bounded whatever is sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from werkzeug.datastructures import Headers
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import (
    NEED_DATA,
    Data,
    Epilogue,
    File,
    MultipartDecoder,
    Preamble,
    State,
)
from werkzeug.sansio.multipart import Field as FieldEvent

from gateway.errors import BadRequest, BodyTooLarge, FieldError, RequestTimeout, UnsupportedMediaType
from gateway.jsonbody import MAX_JSON_BODY

READ_SIZE = 1024 * 1024
# Text before the first boundary (and after the last) is ignored by RFC 2046; browsers and HTTP
# libraries send none.  64 KiB is generous for any real client and small enough to hold per upload.
MAX_PREAMBLE_BYTES = 64 * 1024
MAX_EPILOGUE_BYTES = 64 * 1024
# One part's headers are a Content-Disposition (with the file name) and a Content-Type: a few
# hundred bytes.  16 KiB is twice gunicorn's limit for one HTTP header field (8,190 bytes).
MAX_PART_HEADER_BYTES = 16 * 1024
# A text field (`kind`) is a word; 64 KiB is far above any real value.  The one-shot form's
# `request` part carries the create body, so it may be as large as a JSON body (MAX_JSON_BODY).
MAX_FIELD_BYTES = 64 * 1024
MAX_REQUEST_PART_BYTES = MAX_JSON_BODY
# API.md v1.1: more than 10 parts is 413.  The one-shot form is `request` plus its documents.
MAX_PARTS = 10


class MultipartInvalid(BadRequest):
    code = "MULTIPART_INVALID"


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a multipart/form-data body, or 415 MULTIPART_REQUIRED."""
    mimetype, options = parse_options_header(content_type or "")
    boundary = options.get("boundary", "")
    if mimetype != "multipart/form-data" or not boundary or len(boundary) > 200:
        raise UnsupportedMediaType("Send the document as multipart/form-data with fields `kind` and `file`.",
                                   code="MULTIPART_REQUIRED")
    return boundary.encode("latin-1")


def _too_large(what: str, name: str | None = None) -> BodyTooLarge:
    return BodyTooLarge(f"The multipart body was refused: its {what} went past the limit.",
                        errors=[FieldError("BODY_TOO_LARGE", name, f"{what} too large")])


@dataclass
class Part:
    """One part of the form; read it with `chunks()` (files) or `text()` (fields) before the next part."""

    name: str
    filename: str | None
    headers: Headers
    _reader: MultipartReader = field(repr=False)
    exhausted: bool = False
    limit: int = MAX_FIELD_BYTES  # for a non-file part: refused past this many bytes
    size: int = 0

    @property
    def is_file(self) -> bool:
        """True for a file part (it has a filename)."""
        return self.filename is not None

    def chunks(self) -> Iterator[bytes]:
        """The part's bytes, as they arrive (a non-file part is refused once it passes its limit)."""
        while not self.exhausted:
            event = self._reader.next_event()
            if not isinstance(event, Data):
                raise MultipartInvalid("The multipart body is malformed.")
            if not event.more_data:
                self.exhausted = True
            self.size += len(event.data)
            if not self.is_file and self.size > self.limit:
                raise _too_large(f"field `{self.name[:40]}`", self.name[:40])
            if event.data:
                yield event.data

    def text(self, limit: int = MAX_FIELD_BYTES) -> str:
        """A text field's value, bounded by `limit` (never more than the reader holds for one field)."""
        self.limit = limit
        data = bytearray()
        for chunk in self.chunks():
            data.extend(chunk)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise MultipartInvalid(f"The form field `{self.name[:40]}` is not UTF-8.") from None


class MultipartReader:
    """Pulls a multipart body from a stream one part at a time, within fixed caps."""

    def __init__(self, stream: BinaryIO, boundary: bytes, *, read_size: int = READ_SIZE):
        self._stream = stream
        self._decoder = MultipartDecoder(boundary, max_form_memory_size=None)
        self._read_size = read_size
        self._ended = False
        self.bytes_read = 0

    def _held_cap(self) -> tuple[int, str] | None:
        # Where the decoder keeps bytes until it finds a delimiter, the cap on what it may hold.
        # (In a part's data it holds only a possible partial boundary: bounded by itself.)
        state = self._decoder.state
        if state is State.PREAMBLE:
            return MAX_PREAMBLE_BYTES, "preamble"
        if state is State.PART:
            return MAX_PART_HEADER_BYTES, "part headers"
        if state is State.EPILOGUE:
            return MAX_EPILOGUE_BYTES, "epilogue"
        return None

    def _read(self) -> bytes:
        cap = self._held_cap()
        size = self._read_size
        if cap is not None:  # read no further than one byte past the cap: decided at the cap, not after
            size = max(1, min(size, cap[0] + 1 - len(self._decoder.buffer)))
        try:
            return self._stream.read(size)
        except TimeoutError:
            raise RequestTimeout("The body arrived too slowly; send it again.") from None

    def next_event(self):
        """The next decoder event, reading more of the body as needed."""
        while True:
            try:
                event = self._decoder.next_event()
            except ValueError:  # also UnicodeDecodeError in part headers
                raise MultipartInvalid("The multipart body ended early or is malformed.") from None
            if event is not NEED_DATA:
                return event
            cap = self._held_cap()
            if cap is not None and len(self._decoder.buffer) > cap[0]:
                raise _too_large(cap[1])
            if self._ended:
                raise MultipartInvalid("The multipart body ended before its closing boundary.")
            chunk = self._read()
            self.bytes_read += len(chunk)
            if chunk:
                self._decoder.receive_data(chunk)
            else:
                self._ended = True
                self._decoder.receive_data(None)

    def parts(self) -> Iterator[Part]:
        """Each part in order; an unread part is skipped (within its cap) when the next one is asked for."""
        count = 0
        while True:
            event = self.next_event()
            if isinstance(event, Epilogue):
                return
            if isinstance(event, Preamble):
                if len(event.data) > MAX_PREAMBLE_BYTES:  # arrived whole in one read
                    raise _too_large("preamble")
                continue
            if isinstance(event, Data):
                continue  # the tail of a part the caller chose not to read
            if not isinstance(event, FieldEvent | File):
                raise MultipartInvalid("The multipart body is malformed.")
            if sum(len(k) + len(v) + 4 for k, v in event.headers.items()) > MAX_PART_HEADER_BYTES:
                raise _too_large("part headers")
            count += 1
            if count > MAX_PARTS:
                raise _too_large(f"number of parts (at most {MAX_PARTS})")
            part = Part(event.name, getattr(event, "filename", None), event.headers, self)
            yield part
            for _ in part.chunks():  # drain whatever the caller left
                pass

    def drain(self, limit: int) -> None:
        """Read and discard the rest of the body (up to `limit` bytes) so the client sees our answer."""
        remaining = limit
        while remaining > 0 and not self._ended:
            try:
                chunk = self._stream.read(min(self._read_size, remaining))
            except OSError:
                return
            if not chunk:
                return
            remaining -= len(chunk)

"""A streaming multipart/form-data reader: parts are consumed as they arrive, never buffered whole.

Werkzeug's own form parser spools every file before the view runs; here the
view pulls one part at a time and streams a file part's bytes straight into
the scanner and storage.  Text fields are small and bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from werkzeug.datastructures import Headers
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import NEED_DATA, Data, Epilogue, File, MultipartDecoder, Preamble
from werkzeug.sansio.multipart import Field as FieldEvent

from gateway.errors import BadRequest, FieldError, PayloadTooLarge, UnsupportedMediaType

READ_SIZE = 1024 * 1024
MAX_FIELD_BYTES = 1024 * 1024  # the one-shot form's `request` JSON part is the largest field
MAX_PARTS = 40


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


@dataclass
class Part:
    """One part of the form; read it with `chunks()` (files) or `text()` (fields) before the next part."""

    name: str
    filename: str | None
    headers: Headers
    _reader: MultipartReader = field(repr=False)
    exhausted: bool = False

    @property
    def is_file(self) -> bool:
        """True for a file part (it has a filename)."""
        return self.filename is not None

    def chunks(self) -> Iterator[bytes]:
        """The part's bytes, as they arrive."""
        while not self.exhausted:
            event = self._reader.next_event()
            if not isinstance(event, Data):
                raise MultipartInvalid("The multipart body is malformed.")
            if not event.more_data:
                self.exhausted = True
            if event.data:
                yield event.data

    def text(self, limit: int = MAX_FIELD_BYTES) -> str:
        """A text field's value, bounded."""
        data = bytearray()
        for chunk in self.chunks():
            data.extend(chunk)
            if len(data) > limit:
                raise PayloadTooLarge(f"The form field `{self.name}` is too large.", code="FIELD_TOO_LARGE",
                                      errors=[FieldError("FIELD_TOO_LARGE", self.name, "too large")])
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise MultipartInvalid(f"The form field `{self.name}` is not UTF-8.") from None


class MultipartReader:
    """Pulls a multipart body from a stream one part at a time."""

    def __init__(self, stream: BinaryIO, boundary: bytes, *, read_size: int = READ_SIZE):
        self._stream = stream
        self._decoder = MultipartDecoder(boundary, max_form_memory_size=None)
        self._read_size = read_size
        self._ended = False
        self.bytes_read = 0

    def next_event(self):
        """The next decoder event, reading more of the body as needed."""
        while True:
            try:
                event = self._decoder.next_event()
            except ValueError:
                raise MultipartInvalid("The multipart body ended early or is malformed.") from None
            if event is not NEED_DATA:
                return event
            if self._ended:
                raise MultipartInvalid("The multipart body ended before its closing boundary.")
            chunk = self._stream.read(self._read_size)
            self.bytes_read += len(chunk)
            if chunk:
                self._decoder.receive_data(chunk)
            else:
                self._ended = True
                self._decoder.receive_data(None)

    def parts(self) -> Iterator[Part]:
        """Each part in order; an unread part is skipped when the next one is asked for."""
        count = 0
        while True:
            event = self.next_event()
            if isinstance(event, Epilogue):
                return
            if isinstance(event, Data | Preamble):
                continue  # the tail of a part the caller chose not to read, or text before the first part
            if not isinstance(event, FieldEvent | File):
                raise MultipartInvalid("The multipart body is malformed.")
            count += 1
            if count > MAX_PARTS:
                raise MultipartInvalid("Too many parts in the form.")
            part = Part(event.name, getattr(event, "filename", None), event.headers, self)
            yield part
            for _ in part.chunks():  # drain whatever the caller left
                pass

    def drain(self, limit: int) -> None:
        """Read and discard the rest of the body (up to `limit` bytes) so the client sees our answer."""
        remaining = limit
        while remaining > 0 and not self._ended:
            chunk = self._stream.read(min(self._read_size, remaining))
            if not chunk:
                return
            remaining -= len(chunk)

"""The streaming multipart reader refuses oversized preambles, part headers, fields and part counts while
reading: each test feeds an endless stream and counts how much of it was read before the 413."""

from __future__ import annotations

import io
import itertools

import pytest

from gateway.errors import BodyTooLarge
from gateway.intake import multipart
from gateway.intake.multipart import MultipartReader

B = b"limits-boundary"
MIB = 1024 * 1024


class Endless(io.RawIOBase):
    """`head`, then `filler` forever; remembers how many bytes were asked for and handed out."""

    def __init__(self, head: bytes, filler: bytes = b"x"):
        self._head = head
        self._filler = filler
        self.served = 0

    def readable(self):
        return True

    def read(self, size=-1):
        size = MIB if size is None or size < 0 else size
        if self._head:
            out, self._head = self._head[:size], self._head[size:]
        else:
            out = (self._filler * (size // len(self._filler) + 1))[:size]
        self.served += len(out)
        return out


def read_all(reader: MultipartReader) -> None:
    for part in reader.parts():
        if part.is_file:
            for _ in part.chunks():
                pass
        else:
            part.text()


def part(name: str, value: bytes = b"v", filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return b"--" + B + b"\r\nContent-Disposition: " + disposition.encode() + b"\r\n\r\n" + value + b"\r\n"


@pytest.mark.parametrize(("head", "cap"), [
    (b"", multipart.MAX_PREAMBLE_BYTES),  # junk before any boundary
    (b"--" + B + b'\r\nContent-Disposition: form-data; name="kind"\r\nX-Junk: ', multipart.MAX_PART_HEADER_BYTES),
    (b"--" + B + b'\r\nContent-Disposition: form-data; name="kind"\r\n\r\n', multipart.MAX_FIELD_BYTES),
    (part("kind") + b"--" + B + b"--\r\n", multipart.MAX_EPILOGUE_BYTES),  # junk after the closing boundary
])
def test_endless_junk_is_refused_at_its_cap(head, cap):
    stream = Endless(head)
    with pytest.raises(BodyTooLarge) as raised:
        read_all(MultipartReader(stream, B))
    assert raised.value.code == "BODY_TOO_LARGE" and raised.value.status == 413
    # Decided at the cap, not after buffering: what was read is the cap plus at most one read.
    assert stream.served <= len(head) + cap + multipart.READ_SIZE


def test_a_file_part_streams_past_every_text_cap():
    size = 8 * MIB
    body = (part("kind", b"authorization") + b"--" + B + b'\r\nContent-Disposition: form-data; name="file"; '
            b'filename="a.pdf"\r\n\r\n' + b"%" * size + b"\r\n--" + B + b"--\r\n")
    reader = MultipartReader(io.BytesIO(body), B)
    seen = {}
    for p in reader.parts():
        seen[p.name] = sum(len(c) for c in p.chunks()) if p.is_file else p.text()
    assert seen == {"kind": "authorization", "file": size}


def test_the_request_part_may_be_as_large_as_a_json_body():
    value = b'"' + b"a" * (multipart.MAX_REQUEST_PART_BYTES - 2) + b'"'
    reader = MultipartReader(io.BytesIO(part("request", value) + b"--" + B + b"--\r\n"), B)
    (only,) = list(itertools.islice(reader.parts(), 1))
    assert len(only.text(limit=multipart.MAX_REQUEST_PART_BYTES)) == len(value)
    too_big = MultipartReader(io.BytesIO(part("request", value + b"a") + b"--" + B + b"--\r\n"), B)
    with pytest.raises(BodyTooLarge):
        next(too_big.parts()).text(limit=multipart.MAX_REQUEST_PART_BYTES)


def test_ten_parts_are_read_and_an_eleventh_is_refused():
    ten = b"".join(part(f"f{i}") for i in range(10)) + b"--" + B + b"--\r\n"
    read_all(MultipartReader(io.BytesIO(ten), B))
    eleven = b"".join(part(f"f{i}") for i in range(11)) + b"--" + B + b"--\r\n"
    with pytest.raises(BodyTooLarge):
        read_all(MultipartReader(io.BytesIO(eleven), B))


def test_an_unread_field_is_still_capped_when_skipped():
    stream = Endless(b"--" + B + b'\r\nContent-Disposition: form-data; name="ignored"\r\n\r\n')
    reader = MultipartReader(stream, B)
    with pytest.raises(BodyTooLarge):
        for _ in reader.parts():
            pass  # the caller skips the part; draining it still counts against its cap
    assert stream.served <= multipart.MAX_FIELD_BYTES + multipart.READ_SIZE + 100

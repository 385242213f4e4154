"""The one JSON parser for request bodies: nesting decided by a linear scan, never by recursion."""

from __future__ import annotations

import pytest

from gateway import jsonbody


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize(("text", "too_deep"), [
    (nested(32), False),
    (nested(33), True),
    ('{"a": ' + nested(31) + "}", False),
    ('{"a": ' + nested(32) + "}", True),
    ("[{" * 16 + "[]" + "}]" * 16, True),  # 33 open at once, mixed kinds
    ("[]" * 1000 + nested(32), False),  # many siblings, never deeper than 32
    ('"' + "[" * 100 + '"', False),  # brackets inside a string are text
    ('["\\"' + "[" * 100 + '"]', False),  # ...even after an escaped quote
    ("", False),
])
def test_nesting_is_counted_outside_strings(text, too_deep):
    assert jsonbody.nesting_exceeds(text) is too_deep


def test_thirty_two_levels_parse_and_thirty_three_do_not():
    value = jsonbody.loads(nested(32).encode())
    for _ in range(31):
        (value,) = value
    assert value == []
    with pytest.raises(jsonbody.MalformedJsonError):
        jsonbody.loads(nested(33).encode())


@pytest.mark.parametrize("data", [
    b"[" * 100_000,  # RecursionError in the standard library's decoder; refused before it runs
    b"{" * 100_000,
    b'{"reference": ',
    b"",
    b"NaN",
    b'{"a": Infinity}',
    b"\xff\xfe\xfa",
])
def test_malformed_bodies_raise_one_error(data):
    with pytest.raises(jsonbody.MalformedJsonError):
        jsonbody.loads(data)


def test_valid_bodies_in_any_json_encoding():
    assert jsonbody.loads('{"a": [1, "x]]"]}'.encode("utf-16")) == {"a": [1, "x]]"]}
    assert jsonbody.loads(b'{"a": "\\u00e9"}') == {"a": "\u00e9"}

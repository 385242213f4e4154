"""The one JSON parser for request bodies: bounded in size and nesting, strict in syntax.

Flask's `request.get_json` reaches it through the app's JSON provider, the
one-shot form's `request` part calls it directly, and webargs (which parses
bodies with the standard library on its own) only ever sees a body that has
already passed through it (`gateway.web.check_body`).  No Flask here: it is a
plain function, tested on its own.
"""

from __future__ import annotations

import json
import operator
import re
from itertools import accumulate, count

# Every non-upload body is small JSON: a create body with a long `instructions` text is a few
# tens of KiB, so 1 MiB leaves room for any real request and bounds what a worker buffers.
MAX_JSON_BODY = 1024 * 1024
# A batch (POST /v1/batches) carries up to 1,000 create bodies of a few KiB each: its own, larger cap.
MAX_BATCH_BODY = 8 * 1024 * 1024
# Not JSON, but capped the same way: the portal's CSV import form (one file of up to 1,000 rows, each a
# few hundred bytes), read whole by werkzeug's form parser.
MAX_CSV_FORM_BODY = 4 * 1024 * 1024
# API.md v1.1: more than 32 levels is MALFORMED_JSON.  The create body nests 4 deep; the standard
# library's decoder recurses once per level, so `[` x 100,000 would otherwise end in RecursionError.
MAX_JSON_DEPTH = 32

# JSON strings (escapes included) are removed before brackets are counted, so `"[[["` is not nesting.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = str.maketrans({"[": "\x02", "{": "\x02", "]": "\x00", "}": "\x00"})


class MalformedJsonError(ValueError):
    """The body is not JSON, or nests deeper than MAX_JSON_DEPTH (a ValueError, as json's own errors)."""


def nesting_exceeds(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if `text` has more than `limit` arrays/objects open at once: one linear scan, no recursion."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if not brackets:
        return False
    # Each opening bracket steps 2, each closing one 0: after the i-th bracket the running sum
    # minus i is the depth there.  accumulate/map/count keep the loop in C (1 MiB of `[]`: well under 0.1 s).
    steps = brackets.translate(_STEP).encode("latin-1")
    return max(map(operator.sub, accumulate(steps), count(1))) > limit


def _no_constants(name: str):
    raise MalformedJsonError(f"{name} is not JSON")  # RFC 8259 has no NaN or Infinity


def loads(data: bytes | bytearray | str):
    """Decode a JSON body; MalformedJsonError if it is not UTF-8/16/32 JSON or nests too deep."""
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode(json.detect_encoding(data))
        except UnicodeDecodeError:
            raise MalformedJsonError("the body is not UTF-8 text") from None
    else:
        text = data
    if nesting_exceeds(text):
        raise MalformedJsonError(f"the JSON nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text, parse_constant=_no_constants)
    except MalformedJsonError:
        raise
    except (ValueError, RecursionError):
        raise MalformedJsonError("the body is not valid JSON") from None

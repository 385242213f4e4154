"""The GatewayError tree and the one place errors become RFC 9457 problem+json.

Services raise typed errors; views never build error bodies.  Framework errors
(werkzeug's 404/405/413, webargs' 422, Flask-Limiter's 429) and unexpected
exceptions are rendered here in the same shape, with a stable `code` and the
request id, and never a stack trace or any input echoed back.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

from flask import Flask, g, jsonify
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException

log = logging.getLogger("gateway.errors")

PROBLEM_CONTENT_TYPE = "application/problem+json"


@dataclass(frozen=True)
class FieldError:
    """One finding about one field: a validation error or a rules deficiency."""

    code: str
    field: str | None
    message: str
    rule: str | None = None

    def to_dict(self) -> dict:
        """The wire shape used in `errors` and `deficiencies`."""
        return asdict(self)


class GatewayError(Exception):
    """Base of every error the gateway answers with on purpose."""

    status = 500
    code = "INTERNAL_ERROR"
    title = "Internal server error"

    def __init__(self, detail: str | None = None, *, errors: Iterable[FieldError] = (),
                 headers: Mapping[str, str] | None = None, code: str | None = None,
                 **extensions):
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = list(errors)
        self.headers = dict(headers or {})
        if code:
            self.code = code
        self.extensions = extensions


class BadRequest(GatewayError):
    status, code, title = 400, "BAD_REQUEST", "Bad request"


class Unauthenticated(GatewayError):
    status, code, title = 401, "UNAUTHENTICATED", "Authentication required"

    def __init__(self, detail: str | None = None, **kwargs):
        # One identical body whatever the reason, so a caller cannot probe why.
        super().__init__("A valid credential is required.",
                         headers={"WWW-Authenticate": 'Bearer realm="records-gateway"'}, **kwargs)


class Forbidden(GatewayError):
    status, code, title = 403, "FORBIDDEN", "Not allowed"


class NotFound(GatewayError):
    status, code, title = 404, "NOT_FOUND", "Not found"

    def __init__(self, detail: str | None = None, **kwargs):
        # Missing and someone else's look exactly alike: no detail varies.
        super().__init__("The requested resource does not exist.", **kwargs)


class Conflict(GatewayError):
    status, code, title = 409, "CONFLICT", "Conflict"


class PreconditionFailed(GatewayError):
    """An If-Match named a version the request no longer has: nothing was changed."""

    status, code, title = 412, "PRECONDITION_FAILED", "Precondition failed"


class PayloadTooLarge(GatewayError):
    status, code, title = 413, "FILE_TOO_LARGE", "Payload too large"


class BodyTooLarge(PayloadTooLarge):
    """A body (or a part of a multipart body) past a fixed cap, refused while it streams."""

    code, title = "BODY_TOO_LARGE", "Body too large"


class MalformedJson(BadRequest):
    """A body that is not JSON, or nests deeper than the contract allows."""

    code, title = "MALFORMED_JSON", "Malformed JSON"


class RequestTimeout(GatewayError):
    """The client stopped sending its body (or sent it too slowly) before it was complete."""

    status, code, title = 408, "REQUEST_TIMEOUT", "Request timeout"


class UnsupportedMediaType(GatewayError):
    status, code, title = 415, "FILE_TYPE_NOT_ALLOWED", "Unsupported media type"


class Unprocessable(GatewayError):
    status, code, title = 422, "VALIDATION_FAILED", "Unprocessable request"


class TooManyRequests(GatewayError):
    status, code, title = 429, "RATE_LIMITED", "Too many requests"

    def __init__(self, detail: str | None = None, *, retry_after: int, **kwargs):
        super().__init__(detail, headers={"Retry-After": str(max(1, int(retry_after)))}, **kwargs)


class ServiceUnavailable(GatewayError):
    status, code, title = 503, "SERVICE_UNAVAILABLE", "Service unavailable"

    def __init__(self, detail: str | None = None, *, retry_after: int = 30, **kwargs):
        super().__init__(detail, headers={"Retry-After": str(retry_after)}, **kwargs)


# Werkzeug's HTTP errors mapped to stable codes.
_HTTP_CODES = {
    400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 403: "FORBIDDEN", 404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED", 406: "NOT_ACCEPTABLE", 408: "REQUEST_TIMEOUT", 409: "CONFLICT",
    412: "PRECONDITION_FAILED", 413: "BODY_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE", 422: "VALIDATION_FAILED", 429: "RATE_LIMITED",
}
# Our own wording, so an unknown route and someone else's object read the same.
_HTTP_DETAILS = {
    404: NotFound().detail,
    405: "This resource does not support that method; see the Allow header.",
    413: "The request body is larger than this endpoint accepts.",
}
_MARSHMALLOW_CODES = {
    "Unknown field.": "UNKNOWN_FIELD",
    "Missing data for required field.": "FIELD_REQUIRED",
    "Field may not be null.": "FIELD_REQUIRED",
}


def problem_body(status: int, code: str, title: str, detail: str, *, errors: Iterable[FieldError] = (),
                 extensions: Mapping | None = None) -> dict:
    """The problem+json document; the only place error bodies are built."""
    body = {
        "type": f"/problems/{code.lower().replace('_', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": getattr(g, "request_id", None),
        "errors": [e.to_dict() for e in errors],
    }
    if extensions:
        body.update({k: v for k, v in extensions.items() if k not in body})
    return body


def error_body(error: GatewayError) -> dict:
    """The problem document of a GatewayError (for storing a response to replay)."""
    return problem_body(error.status, error.code, error.title, error.detail, errors=error.errors,
                        extensions=error.extensions)


def problem_response(status: int, code: str, title: str, detail: str, *,
                     errors: Iterable[FieldError] = (), headers: Mapping[str, str] | None = None,
                     extensions: Mapping | None = None):
    """Render one problem+json response."""
    body = problem_body(status, code, title, detail, errors=errors, extensions=extensions)
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM_CONTENT_TYPE
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def flatten_messages(messages, prefix: str = "") -> list[FieldError]:
    """Turn marshmallow's nested message dict into one FieldError per field."""
    out: list[FieldError] = []
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            out.extend(flatten_messages(value, name))
    elif isinstance(messages, list | tuple):
        if all(isinstance(m, str) for m in messages):
            for message in messages:
                out.append(FieldError(_MARSHMALLOW_CODES.get(message, "INVALID_FIELD"),
                                      prefix or None, message))
        else:
            for item in messages:
                out.extend(flatten_messages(item, prefix))
    else:
        out.append(FieldError("INVALID_FIELD", prefix or None, str(messages)))
    return out


def _handle_gateway_error(error: GatewayError):
    if error.status >= 500:
        log.warning("request failed", extra={"code": error.code, "status": error.status})
    return problem_response(error.status, error.code, error.title, error.detail,
                            errors=error.errors, headers=error.headers, extensions=error.extensions)


def _handle_http_exception(error: HTTPException):
    status = error.code or 500
    code = _HTTP_CODES.get(status, "HTTP_ERROR")
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    errors: list[FieldError] = []
    detail = _HTTP_DETAILS.get(status) or (error.description if isinstance(error.description, str) else error.name)
    data = getattr(error, "data", None)
    if status == 422 and isinstance(data, Mapping) and "messages" in data:
        # webargs wraps messages by location ({"json": {...}}); the location is noise to clients.
        messages = data["messages"]
        if isinstance(messages, Mapping) and len(messages) == 1:
            messages = next(iter(messages.values()))
        errors = flatten_messages(messages)
        detail = "The request body has invalid fields; see errors."
    if status == 429:
        detail = "Too many requests; slow down and retry after the indicated delay."
        headers.setdefault("Retry-After", "60")
    return problem_response(status, code, error.name, detail, errors=errors, headers=headers)


def _handle_database_error(error: DBAPIError):
    # A lost or refused connection is an outage, not a bug: tell the client to retry.
    if error.connection_invalidated or _is_operational(error):
        log.error("database unavailable", extra={"exception_type": type(error.orig).__name__})
        return problem_response(503, "DATABASE_UNAVAILABLE", "Service unavailable",
                                "The database is unavailable; retry shortly.", headers={"Retry-After": "10"})
    return _handle_unexpected(error)


def _is_operational(error: DBAPIError) -> bool:
    from sqlalchemy.exc import OperationalError

    return isinstance(error, OperationalError)


def _handle_unexpected(error: Exception):
    # The exception text may quote user input or SQL parameters, so only its type
    # and the frames are logged; the client learns nothing but the request id.
    frames = "".join(traceback.format_tb(error.__traceback__))
    log.error("unhandled exception", extra={"exception_type": type(error).__name__, "stack": frames})
    return problem_response(500, "INTERNAL_ERROR", "Internal server error",
                            "An unexpected error occurred; quote the request id to support.")


def _as_page_when_asked(handler):
    """The problem response, unless a registered page renderer (the portal's) turns it into HTML.

    The renderer sees only the finished problem body, so a page can never say more than the API would.
    """
    import functools

    from flask import current_app

    @functools.wraps(handler)
    def respond(error):
        response = handler(error)
        render_page = current_app.extensions.get("gateway.error_page")
        page = render_page(response) if render_page is not None else None
        return page if page is not None else response

    return respond


def register_error_handlers(app: Flask) -> None:
    """Install the problem+json handlers for every error the app can raise."""
    app.register_error_handler(GatewayError, _as_page_when_asked(_handle_gateway_error))
    app.register_error_handler(HTTPException, _as_page_when_asked(_handle_http_exception))
    app.register_error_handler(DBAPIError, _as_page_when_asked(_handle_database_error))
    app.register_error_handler(Exception, _as_page_when_asked(_handle_unexpected))

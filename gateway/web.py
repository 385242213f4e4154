"""Helpers for views: the request's database session, the adapters, the settings.

Views import these instead of reaching into `current_app` themselves, so the
request-scoped session is opened in one place and closed in one place.
"""

from __future__ import annotations

from flask import Request, current_app, g, request
from flask.json.provider import DefaultJSONProvider
from sqlalchemy.orm import Session
from werkzeug.routing import BaseConverter, UnicodeConverter

from gateway import jsonbody
from gateway import openapi as _openapi
from gateway.adapters import Adapters
from gateway.clock import Clock
from gateway.errors import BodyTooLarge, MalformedJson
from gateway.settings import Settings


def adapters() -> Adapters:
    """The adapters the application factory built for this app."""
    return current_app.extensions["gateway"]


def settings() -> Settings:
    """The injected settings."""
    return adapters().settings


def clock() -> Clock:
    """The injected clock (today in the facilities' calendar)."""
    return adapters().clock


def db_session() -> Session:
    """The request's session, opened on first use and closed at teardown."""
    session = g.get("_db_session")
    if session is None:
        session = g._db_session = adapters().db.sessions()
    return session


def close_db_session(_exc=None) -> None:
    """Teardown: roll back whatever a view left uncommitted and close the session."""
    session = g.pop("_db_session", None)
    if session is not None:
        session.rollback()
        session.close()


# The header parameters as the OpenAPI document describes them (one definition, in gateway.openapi).
IDEMPOTENCY_HEADER, IF_MATCH_HEADER = _openapi.IDEMPOTENCY_HEADER, _openapi.IF_MATCH_HEADER


class PathSegmentConverter(UnicodeConverter):
    """The default path converter, less NUL: PostgreSQL text cannot hold one, so such an id names nothing
    (a 404 like any unknown URL, rather than a database error)."""

    def __init__(self, map, minlength=1, maxlength=None, length=None):
        super().__init__(map, minlength, maxlength, length)
        self.regex = self.regex.replace("[^/]", "[^/\\x00]", 1)


class RequestIdConverter(BaseConverter):
    """`<request_id:...>`: a request id in a path, any segment but `validate` and `search` (POST
    /v1/requests/validate and /search), so that GET /v1/requests/validate is a 405 naming POST, not a lookup
    of a request called "validate"."""

    NOT_IDS = ("validate", "search")
    regex = r"(?!(?:validate|search)$)[^/\x00]+"

    @staticmethod
    def openapi_schema(_converter=None) -> dict:
        """The OpenAPI schema of such a path parameter."""
        return {"type": "string", "minLength": 1, "not": {"enum": list(RequestIdConverter.NOT_IDS)}}


def query_flag(name: str) -> bool:
    """A boolean query parameter as OpenAPI writes one (`true` or `false`); absent is false, anything else 422."""
    from gateway.errors import FieldError, Unprocessable

    value = request.args.get(name)
    if value is None or value == "false":
        return False
    if value == "true":
        return True
    raise Unprocessable("Invalid query parameter; see errors.",
                        errors=[FieldError("INVALID_FIELD", name, "Not a valid boolean: send true or false.")])


def idempotent(view):
    """Decorator for JSON POSTs honouring `Idempotency-Key`; place it outside `@blp.response`."""
    import functools

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        return run_idempotently(lambda: view(*args, **kwargs))

    return wrapper


def run_idempotently(produce):
    """Run `produce` (returning a finished response) under the request's Idempotency-Key, if any."""
    import json

    from flask import make_response, request
    from werkzeug.exceptions import HTTPException

    from gateway import idempotency
    from gateway.errors import GatewayError

    key = request.headers.get("Idempotency-Key")
    if key is None:
        return produce()
    idempotency.validate_key(key)
    db, principal = adapters().db, g.principal.audit_actor
    print_ = idempotency.fingerprint(request.method, request.path, request.get_data())
    replay = idempotency.claim(db, principal=principal, key=key, print_=print_)
    if replay is not None:
        return replay_response(replay)
    try:
        response = make_response(produce())
    except (GatewayError, HTTPException) as error:
        # Client errors are part of the first answer and replay like it; 5xx release the key.
        response = current_app.handle_user_exception(error)
    except BaseException:
        idempotency.release(db, principal=principal, key=key)
        raise
    body = json.loads(response.get_data()) if response.is_json else None
    idempotency.complete(db, principal=principal, key=key, print_=print_, response=idempotency.StoredResponse(
        response.status_code, body, response.headers.get("Location")))
    return response


def replay_response(stored):
    """Rebuild a stored first response, marked as a replay."""
    from flask import jsonify

    response = jsonify(stored.body)
    response.status_code = stored.status
    if stored.status >= 400:
        response.mimetype = "application/problem+json"
    if stored.location:
        response.headers["Location"] = stored.location
    if stored.status < 300 and isinstance(stored.body, dict) and type(stored.body.get("version")) is int:
        response.headers["ETag"] = f'"{stored.body["version"]}"'  # a request resource: the version it shows
    response.headers["Idempotent-Replayed"] = "true"
    return response


class GatewayJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, decoding with the one bounded parser (`gateway.jsonbody`).

    Flask points every request's `json_module` at `app.json`, so `request.get_json` (and
    `flask.json.loads`) decode through here; a MalformedJsonError is a ValueError, which
    werkzeug's get_json hands to `GatewayRequest.on_json_loading_failed`.
    """

    def loads(self, s, **kwargs):
        """Decode JSON text or bytes; MalformedJsonError when malformed or nested too deep."""
        return jsonbody.loads(s)


class GatewayRequest(Request):
    """Flask's request, answering undecodable JSON with 400 MALFORMED_JSON."""

    def on_json_loading_failed(self, e: ValueError | None):
        """Not JSON at all (wrong media type): Flask's 415; malformed or too deep: 400 MALFORMED_JSON."""
        if e is None:
            return super().on_json_loading_failed(e)
        raise MalformedJson(f"The body is not usable JSON: {e}.")


def has_body() -> bool:
    """True when the client announced a body (a length above zero, or chunked transfer coding)."""
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def check_body() -> None:
    """Before any view of a non-streaming endpoint: the body within its cap, and JSON bodies parsed once.

    A body without Content-Length (chunked) is read through werkzeug's stream capped at
    `max_content_length`, which stops at the cap without saying so; a body that fills the cap
    is therefore refused here.  Parsing every JSON body through `get_json` means webargs
    (which decodes bodies with the standard library itself) only ever sees one that is valid
    and at most 32 levels deep.
    """
    if not has_body():
        return
    data = request.get_data(cache=True)  # 413 at once when Content-Length is over the cap
    cap = request.max_content_length
    if cap is not None and request.content_length is None and len(data) >= cap:
        raise BodyTooLarge(f"The request body is larger than this endpoint accepts ({cap // 1024} KiB).")
    if request.is_json:
        request.get_json()

"""The application factory: the one composition root of the gateway."""

from __future__ import annotations

import re
import time
import uuid

from flask import Flask, g, request
from flask_smorest import Api
from werkzeug.middleware.proxy_fix import ProxyFix

from gateway import errors, jsonbody
from gateway.adapters import build_adapters
from gateway.logs import configure_logging
from gateway.metrics import BacklogCollector, Metrics
from gateway.schemas import ProblemSchema
from gateway.settings import Settings
from gateway.web import (
    GatewayJSONProvider,
    GatewayRequest,
    PathSegmentConverter,
    RequestIdConverter,
    check_body,
    close_db_session,
)

# Every non-streaming body (JSON, the portal's forms) is capped here; gateway.jsonbody says why 1 MiB.
MAX_JSON_BODY = jsonbody.MAX_JSON_BODY
# Endpoints whose body may be larger: a batch of 1,000 create bodies, the portal's CSV import form.
LARGE_BODY_ENDPOINTS = {"batches.create_batch": jsonbody.MAX_BATCH_BODY, "fhir.create_task": 32 * 1024 * 1024,
                        "portal.import_csv": jsonbody.MAX_CSV_FORM_BODY}
STREAMING_ENDPOINTS = frozenset({"documents.upload_document", "requests.create_request", "portal.upload_document",
                                 "request_groups.upload_group_document", "portal.upload_group_document"})
# A client's X-Request-ID is echoed only when it cannot smuggle anything into logs.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class GatewayApi(Api):
    """flask-smorest's Api documenting our problem+json error shape instead of its own."""

    ERROR_SCHEMA = ProblemSchema
    # No catch-all `default` response: gateway.openapi documents each status an operation really sends.
    DEFAULT_ERROR_RESPONSE_NAME = None

    def _register_error_handlers(self):
        # Our handlers (gateway.errors) render every error; flask-smorest's would differ.
        pass


def create_app(settings: Settings | None = None, **adapter_overrides) -> Flask:
    """Build a gateway application; every adapter comes from `settings` (or an override)."""
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level, settings.log_json)

    app = Flask("gateway")
    app.request_class = GatewayRequest
    app.url_map.converters["default"] = app.url_map.converters["string"] = PathSegmentConverter
    app.url_map.converters["request_id"] = RequestIdConverter
    app.json = GatewayJSONProvider(app)
    app.config.update(
        API_TITLE="Records Request Gateway",
        API_VERSION="v1",
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        JSON_SORT_KEYS=False,
    )
    app.extensions["gateway"] = build_adapters(settings, **adapter_overrides)
    adapters = app.extensions["gateway"]
    app.extensions["gateway.metrics"] = Metrics(BacklogCollector(redis=adapters.redis, db=adapters.db,
                                                                 clock=adapters.clock))

    if settings.trusted_proxy_count:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxy_count,
                                x_proto=settings.trusted_proxy_count)
    register_request_hooks(app)
    register_blueprints(app)
    register_portal(app)
    register_fhir(app)
    register_security(app, settings)
    register_body_checks(app)
    errors.register_error_handlers(app)
    app.teardown_appcontext(close_db_session)
    return app


def register_blueprints(app: Flask) -> None:
    """Mount every domain's routes on one flask-smorest Api (one OpenAPI document)."""
    from gateway import health
    from gateway.audit import views as audit
    from gateway.auth import account_views, mfa_views
    from gateway.auth import views as auth
    from gateway.auth.ratelimit import UNLIMITED_RULES
    from gateway.auth.web import PUBLIC_RULES
    from gateway.batches import views as batches
    from gateway.facilities import views as facilities
    from gateway.intake import disclosure_views, document_views, group_views, invoice_views, revocation_views
    from gateway.intake import views as intake
    from gateway.messages import views as messages
    from gateway.openapi import ExactResponses
    from gateway.portal import session_views
    from gateway.routing import views as routing
    from gateway.webhooks import views as webhooks

    exact = ExactResponses(app, public_rules=PUBLIC_RULES, rate_limit_exempt=UNLIMITED_RULES)
    api = GatewayApi(app, spec_kwargs={"info": {"description": API_DESCRIPTION}, "extra_plugins": [exact]})
    api.register_converter(RequestIdConverter, RequestIdConverter.openapi_schema)
    for blueprint in (health.blp, facilities.blp, auth.blp, audit.blp, intake.blp, document_views.blp,
                      revocation_views.blp, routing.blp, webhooks.blp, invoice_views.blp, disclosure_views.blp,
                      messages.blp, account_views.blp, session_views.blp, mfa_views.blp, batches.blp,
                      group_views.blp):
        api.register_blueprint(blueprint)
    app.extensions["gateway.api"] = api
    # /docs: Swagger UI from the installed package, never a CDN (gateway.apidocs); not part of the document.
    from gateway import apidocs

    app.register_blueprint(apidocs.blp)


def register_portal(app: Flask) -> None:
    """The web portal under /portal (pages over the same service functions as the API)."""
    from gateway import portal

    portal.install(app)


def register_fhir(app: Flask) -> None:
    """The FHIR R4 interface under /fhir/r4 and its SMART token endpoint (not in the OpenAPI document)."""
    from gateway.fhir import views as fhir

    fhir.install(app)


def register_security(app: Flask, settings: Settings) -> None:
    """Authentication on every non-public route, then per-principal rate limits."""
    from gateway.auth import passwords
    from gateway.auth import web as auth_web
    from gateway.auth.bearer_guard import BearerGuard
    from gateway.auth.ratelimit import install_rate_limits
    from gateway.auth.tokens import TokenService

    db = app.extensions["gateway"].db
    from gateway.auth.oidc import OidcVerifier

    passwords.prepare(settings.password_hash_profile)
    auth_web.install(app, TokenService.from_settings(settings, db), OidcVerifier.from_settings(settings))
    limiter = install_rate_limits(app, settings)
    from gateway.auth.mfa_views import require_enrolment

    app.before_request(require_enrolment)  # after authentication and the rate limits
    # Failed bearer credentials are limited on the limiter's storage (Redis, shared by every process).
    auth_web.install_guard(app, BearerGuard.from_settings(settings, limiter.storage))


def is_streaming_upload() -> bool:
    """A multipart upload to an endpoint that streams it (its own caps; see gateway.intake.multipart)."""
    return request.endpoint in STREAMING_ENDPOINTS and request.mimetype == "multipart/form-data"


def register_body_checks(app: Flask) -> None:
    """After authentication and rate limits, before any view: every other body capped and JSON checked."""

    @app.before_request
    def _check_body():
        if not is_streaming_upload():
            check_body()


def register_request_hooks(app: Flask) -> None:
    """Request id, timing, metrics and the access log."""
    import logging

    access_log = logging.getLogger("gateway.access")

    @app.before_request
    def _start():
        supplied = request.headers.get("X-Request-ID", "")
        g.request_id = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex
        g.started = time.perf_counter()
        # Multipart uploads stream and enforce their own limit; every other body is small JSON.
        if not is_streaming_upload():
            request.max_content_length = LARGE_BODY_ENDPOINTS.get(request.endpoint, MAX_JSON_BODY)

    @app.after_request
    def _finish(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Cache-Control", "no-store")
        route = request.url_rule.rule if request.url_rule else "<unmatched>"
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        app.extensions["gateway.metrics"].observe(request.method, route, response.status_code, seconds)
        # The route template, never the raw path or query string: those can carry references.
        access_log.info("request", extra={
            "request_id": g.get("request_id"), "method": request.method, "route": route,
            "status": response.status_code, "ms": round(seconds * 1000, 1),
            "principal": getattr(g.get("principal"), "audit_actor", None),
        })
        return response


API_DESCRIPTION = """Medical-records requests from attorneys, insurers and healthcare providers
to the hospital system's records teams. Every error is RFC 9457 `application/problem+json`
with a stable `code`; see the `Problem` schema."""

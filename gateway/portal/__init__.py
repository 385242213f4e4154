"""The web portal: server-rendered pages for requesters and records teams under `/portal`.

It is a client of the same service functions as the API (intake, rules,
routing, webhooks, API keys), never a second implementation of them; what it
adds is a browser session, CSRF protection, pages and a little JavaScript.
"""

from __future__ import annotations

from flask import Blueprint, Flask

bp = Blueprint("portal", __name__, url_prefix="/portal", template_folder="templates",
               static_folder="static", static_url_path="/static")


def install(app: Flask) -> None:
    """Mount the portal on `app`: its guard, its pages and its error pages."""
    # Importing the page modules attaches their routes (and the guard) to `bp`, once per process.
    from gateway.auth.hospital_sso import HospitalSso
    from gateway.portal import (  # noqa: F401
        account,
        admin,
        billing,
        caseload,
        dashboard,
        disclosures,
        groups,
        imports,
        messages,
        mfa,
        preferences,
        requests,
        security,
        sso,
        staff,
        templating,
        users,
        web,
        worklist,
    )

    # Hospital sign-on's provider client (discovery and keys cached per process); None when not configured.
    app.extensions["gateway.sso"] = HospitalSso.from_settings(app.extensions["gateway"].settings)
    app.register_blueprint(bp)
    templating.install(app)
    app.extensions["gateway.error_page"] = web.error_page

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
    from gateway.portal import (  # noqa: F401
        account,
        admin,
        billing,
        caseload,
        dashboard,
        disclosures,
        groups,
        messages,
        preferences,
        requests,
        staff,
        templating,
        web,
        worklist,
    )

    app.register_blueprint(bp)
    templating.install(app)
    app.extensions["gateway.error_page"] = web.error_page

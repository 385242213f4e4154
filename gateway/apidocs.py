"""`/docs`: Swagger UI served by the gateway itself, so it works on a closed hospital network.

The assets are Swagger UI's own distribution as the `flask-swagger-ui`
package ships it (installed with the gateway, no CDN); only the files the page
uses are served, under `/docs/assets/`.  The page has no inline script or
style, so it runs under a strict Content-Security-Policy: everything from this
origin, nothing from anywhere else.
"""

from __future__ import annotations

from importlib import resources

from flask import Blueprint, Response, abort, send_file, url_for

blp = Blueprint("apidocs", __name__)

# Swagger UI's files the page uses: name -> media type.
ASSETS = {
    "swagger-ui.css": "text/css",
    "index.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
# Swagger UI draws its icons from data: URIs and sets element styles from script (allowed: not inline markup);
# the one <style> element it adds is allowed by its hash (Swagger UI 5.34's; a test loads the page in Chromium).
SWAGGER_STYLE_HASH = "'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='"
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; "
                           f"style-src 'self' {SWAGGER_STYLE_HASH}; img-src 'self' data:; "
                           "connect-src 'self'; font-src 'self'; form-action 'none'; frame-ancestors 'none'; "
                           "base-uri 'none'; object-src 'none'")
# What the page runs, in place of the inline script of Swagger UI's own index.html.
INIT_SCRIPT = """window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "StandaloneLayout",
    validatorUrl: null
  });
});
"""
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Records Request Gateway API</title>
  <link rel="stylesheet" href="{css}">
  <link rel="stylesheet" href="{index_css}">
  <link rel="icon" type="image/png" href="{icon32}" sizes="32x32">
  <link rel="icon" type="image/png" href="{icon16}" sizes="16x16">
</head>
<body>
  <div id="swagger-ui" data-spec-url="{spec}"></div>
  <script src="{bundle}"></script>
  <script src="{preset}"></script>
  <script src="{init}"></script>
</body>
</html>
"""


def _dist():
    """Swagger UI's distribution directory inside the installed package."""
    return resources.files("flask_swagger_ui") / "dist"


def _secured(response: Response, *, cache: bool) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    if cache:  # the files change only with the package version
        response.headers["Cache-Control"] = "public, max-age=86400"
    return response


@blp.route("/docs")
@blp.route("/docs/")
def swagger_ui():
    """The Swagger UI page for /openapi.json."""
    def asset(name):
        return url_for("apidocs.asset", name=name)

    page = PAGE.format(css=asset("swagger-ui.css"), index_css=asset("index.css"), icon32=asset("favicon-32x32.png"),
                       icon16=asset("favicon-16x16.png"), spec=url_for("api-docs.openapi_json"),
                       bundle=asset("swagger-ui-bundle.js"), preset=asset("swagger-ui-standalone-preset.js"),
                       init=url_for("apidocs.init_script"))
    return _secured(Response(page, mimetype="text/html"), cache=False)


@blp.route("/docs/assets/init.js")
def init_script():
    """The page's start-up script (a file, so the policy needs no inline script)."""
    return _secured(Response(INIT_SCRIPT, mimetype="text/javascript"), cache=True)


@blp.route("/docs/assets/<name>")
def asset(name):
    """One of Swagger UI's files, from the installed package."""
    if name not in ASSETS:
        abort(404)
    with resources.as_file(_dist() / name) as path:
        response = send_file(path, mimetype=ASSETS[name], max_age=86400)
    return _secured(response, cache=True)

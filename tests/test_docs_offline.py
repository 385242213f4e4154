"""`/docs` works without the internet: the page and every asset it names come from the gateway itself.

On a hospital's closed network a page that loads Swagger UI from a CDN is
blank.  Here the page names only same-origin URLs, each of them is served by
the app (Swagger UI's files from the installed package), the stylesheets refer
to nothing but data: URIs, and the Content-Security-Policy lets the browser
fetch nothing from anywhere else.  tests/portal/test_docs_browser.py loads the
page in Chromium and watches every request it makes.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:)?//", re.I)


class References(HTMLParser):
    """Every URL a page makes a browser fetch: src and href attributes."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.urls += [value for name, value in attrs if name in {"src", "href", "data-spec-url"} and value]


def test_docs_page_names_only_its_own_assets(client):
    response = client.get("/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    parser = References()
    parser.feed(page)
    assert parser.urls, page
    assert "<script>" not in page and "<style" not in page  # nothing inline: the policy allows none
    for url in parser.urls:
        assert url.startswith("/") and not EXTERNAL.match(url), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.content_length or asset.data, url
        if asset.mimetype == "text/css":
            for ref in re.findall(r"url\(\s*['\"]?([^'\")]+)", asset.get_data(as_text=True)):
                assert ref.startswith("data:") or not EXTERNAL.match(ref), (url, ref[:80])
        if asset.mimetype == "text/javascript" and url.endswith("init.js"):
            assert "http" not in asset.get_data(as_text=True)
    assert client.get("/openapi.json").status_code == 200


def test_docs_page_policy_allows_only_this_origin(client):
    policy = client.get("/docs").headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    assert directives["default-src"] == "'none'"
    for name, sources in directives.items():
        for source in sources.split():
            # This origin, data: images, and one style element of Swagger UI's allowed by its hash.
            allowed = source in {"'self'", "'none'", "data:"} or (name == "style-src" and source.startswith("'sha256-"))
            assert allowed, (name, source)
    assert "unsafe" not in policy


def test_only_the_listed_assets_are_served(client):
    assert client.get("/docs/assets/oauth2-redirect.html").status_code == 404
    assert client.get("/docs/assets/..%2Fapidocs.py").status_code == 404
    assert client.get("/docs/assets/swagger-ui.css").headers["Cache-Control"] == "public, max-age=86400"

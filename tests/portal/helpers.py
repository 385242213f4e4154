"""Portal test helpers: a signed-in test client (Flask's), and reading pages."""

from __future__ import annotations

import re

from tests.factories import PASSWORD

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def portal_client(app):
    """A test client speaking HTTPS (the session cookie is Secure, as in production)."""
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    client.environ_base["HTTP_HOST"] = "localhost"
    return client


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    match = _CSRF.search(html)
    assert match, "no csrf_token on the page"
    return match.group(1)


def portal_sign_in(client, email: str, password: str = PASSWORD) -> str:
    """Sign in through the sign-in form; returns the session's CSRF token (from the home page)."""
    page = client.get("/portal/sign-in")
    assert page.status_code == 200
    response = client.post("/portal/sign-in", data={"email": email, "password": password,
                                                    "csrf_token": csrf_of(page.get_data(as_text=True))})
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    landing = client.get(response.headers["Location"], follow_redirects=True)
    assert landing.status_code == 200, landing.get_data(as_text=True)[:500]
    return csrf_of(landing.get_data(as_text=True))

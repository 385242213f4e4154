"""`/docs` in a real browser with no internet to reach: Swagger UI renders the gateway's document from the
gateway alone (every request the page makes goes to the gateway) and the page's policy reports no violation."""

from __future__ import annotations

from urllib.parse import urlsplit


def test_swagger_ui_renders_from_the_gateway_alone(live_gateway, new_page):
    page = new_page(live_gateway.url)
    requested: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto("/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "Records Request Gateway" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector(".opblock-tag-section")  # the operations, grouped by tag
    assert page.locator(".opblock").count() >= 30
    gateway = urlsplit(live_gateway.url).netloc
    outside = [url for url in requested if urlsplit(url).scheme in {"http", "https"}
               and urlsplit(url).netloc != gateway]
    assert not outside, outside
    assert not problems, problems  # a Content-Security-Policy violation would be reported here

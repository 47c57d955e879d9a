"""Security headers on every route (issue 22, item 5; docs/deploy.md, "Security").

The routes come from Django's URL resolver (the walk of tests/api/test_hostile_input.py), each
asked by the caller it is for: every answer carries a Content-Security-Policy with no inline
script or style allowed, Permissions-Policy, Referrer-Policy and `Cache-Control: no-store`, and
no HTML page of ours holds an inline script, style or event handler. Stripe's sources are
allowed on the card form and the 3-D Secure page only, data: images on the API docs only.
"""

import re
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
import time_machine
from django.test import Client

from billing_portal.security_headers import API_DOCS_PAGES, STRIPE_PAGES, stripe_js_sources
from tests.api.test_hostile_input import (  # noqa: F401  (world is a fixture)
    base_url,
    caller_of,
    routes,
    world,
)

HALF = datetime(2026, 11, 16, tzinfo=UTC)
# A tag's inline code: a <script> without src, a <style> element, a style= or on...= attribute.
INLINE = [
    re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE),
    re.compile(r"<style\b", re.IGNORECASE),
    re.compile(r"<[a-z][^>]*\sstyle\s*=", re.IGNORECASE),
    re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.IGNORECASE),
    re.compile(r"javascript:", re.IGNORECASE),
]


def policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    directives = {}
    for part in header.split(";"):
        name, *sources = part.split()
        directives[name] = sources
    return directives


def answers(walk):
    """(route name, url, response) for a GET of every route as the caller it is for."""
    clients, samples = walk
    for name, route, args, regex in routes():
        url = base_url(name, route, args, regex, samples)
        if url is None or "logout" in str(name):
            continue
        yield name, url, clients[caller_of(route)].get(url)


def test_every_route_sends_the_security_headers(world, stripe_standin):  # noqa: F811
    stand_in = "{0.scheme}://{0.netloc}".format(urlsplit(stripe_standin.url))
    checked = set()
    with time_machine.travel(HALF, tick=False):
        for name, url, response in answers(world):
            checked.add(name)
            csp = policy(response)
            assert csp["default-src"] == ["'self'"], url
            assert csp["object-src"] == ["'none'"] and csp["frame-ancestors"] == ["'none'"]
            for directive in ("script-src", "style-src"):
                assert "'self'" in csp[directive], url
                assert not {"'unsafe-inline'", "'unsafe-eval'"} & set(csp[directive]), url
            stripe = name in STRIPE_PAGES
            assert (stand_in in csp["script-src"]) is stripe, url
            assert (stand_in in csp["connect-src"]) is stripe, url
            assert csp["frame-src"] == ([stand_in] if stripe else ["'none'"]), url
            assert ("data:" in csp["img-src"]) is (name in API_DOCS_PAGES), url
            features = dict(f.split("=", 1) for f in response["Permissions-Policy"].split(", "))
            for feature in ("camera", "microphone", "geolocation", "usb"):
                assert features[feature] == "()", url
            assert features["payment"] == (f'(self "{stand_in}")' if stripe else "()"), url
            assert response["Referrer-Policy"] == "same-origin", url
            assert "no-store" in response["Cache-Control"].split(", "), url
    # The walk reached the pages this is about (not only their login redirects).
    assert {"login", "home", "confirm-payment", "api-docs", "admin:login"} <= checked
    assert {"billing:payment-method", "billing:usage", "console:queue"} <= checked


def test_no_html_page_holds_inline_script_or_style(world):  # noqa: F811
    pages = 0
    with time_machine.travel(HALF, tick=False):
        for name, url, response in answers(world):
            if not response.get("Content-Type", "").startswith("text/html"):
                continue
            pages += 1
            html = response.content.decode()
            for pattern in INLINE:
                found = pattern.search(html)
                assert found is None, f"{url} ({name}): {found.group(0)[:120]}"
    assert pages > 50


def test_the_stripe_pages_allow_real_stripe_when_configured(world, settings):  # noqa: F811
    clients, _ = world
    settings.STRIPE_JS_URL = "https://js.stripe.com/v3/"
    assert stripe_js_sources()["connect-src"] == ["https://api.stripe.com"]
    with time_machine.travel(HALF, tick=False):
        response = clients["owner"].get("/billing/shop/payment-method")
    csp = policy(response)
    assert csp["script-src"] == ["'self'", "https://js.stripe.com", "https://*.js.stripe.com"]
    assert "https://hooks.stripe.com" in csp["frame-src"] and "'none'" not in csp["frame-src"]
    assert '<script src="https://js.stripe.com/v3/">' in response.content.decode()


def test_static_files_keep_their_caching_and_skip_the_page_headers(client):
    response = Client().get("/static/portal.css")
    assert response.status_code == 200
    assert "no-store" not in response.get("Cache-Control", "")


@pytest.mark.parametrize("url", ["/login/", "/admin/login/"])
def test_the_login_pages_are_not_stored(client, db, url):
    response = client.get(url)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert "Content-Security-Policy" in response

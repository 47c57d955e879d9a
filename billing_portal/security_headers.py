"""The security headers every page gets, and what a few pages get beyond them (issue 22;
docs/deploy.md, "Security").

django-csp writes Content-Security-Policy from settings.CONTENT_SECURITY_POLICY: our own static
scripts, styles and images only, no inline code. This middleware runs inside it and widens the
policy on the pages that need more, named here by URL name so that the whole policy reads in
one place:

- the Stripe pages (the card form and the 3-D Secure confirmation page) load Stripe.js from
  settings.STRIPE_JS_URL, which talks to Stripe's API and opens Stripe's frames;
- the API docs (Swagger UI, served from drf-spectacular-sidecar's files) draw their icons as
  data: images.

It also writes Permissions-Policy (settings.PERMISSIONS_POLICY; the Stripe pages let Stripe's
frames ask for `payment`) and marks every answer of a view `no-store`: the pages show invoices,
cards and account data that must not stay in a browser's or a proxy's cache after logout.
Static files never get here (WhiteNoise answers them first) and keep their long caching.
"""

from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers

STRIPE_PAGES = frozenset({"billing:payment-method", "confirm-payment"})
API_DOCS_PAGES = frozenset({"api-docs"})
# What Stripe.js itself needs from the real Stripe (Stripe's documented list, for card
# elements and 3-D Secure; no wallets, no address autocomplete).
STRIPE_ORIGIN = "https://js.stripe.com"
STRIPE_SOURCES = {
    "script-src": ["https://js.stripe.com", "https://*.js.stripe.com"],
    "frame-src": ["https://js.stripe.com", "https://*.js.stripe.com", "https://hooks.stripe.com"],
    "connect-src": ["https://api.stripe.com"],
}


def stripe_js_sources() -> dict[str, list[str]]:
    """The CSP sources a page loading settings.STRIPE_JS_URL needs. Read per request: tests and
    the demo point it at the local stand-in, which serves the script, its API and its 3-D
    Secure step from its one origin."""
    origin = _origin(settings.STRIPE_JS_URL)
    if origin == STRIPE_ORIGIN:
        return STRIPE_SOURCES
    return {"script-src": [origin], "frame-src": [origin], "connect-src": [origin]}


def _widened(extra: dict[str, list[str]]) -> dict[str, list[str]]:
    """The settings' directives named in `extra` with its sources added ('none' dropped: it
    must stand alone, and a browser ignores it, with a console warning, beside others)."""
    base = settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]
    widened = {}
    for directive, sources in extra.items():
        kept = [s for s in base.get(directive, base["default-src"]) if s != "'none'"]
        widened[directive] = kept + [s for s in sources if s not in kept]
    return widened


def permissions_policy(*, payment: list[str] | None = None) -> str:
    """settings.PERMISSIONS_POLICY as a header value; `payment` replaces its allowlist."""
    features = dict(settings.PERMISSIONS_POLICY)
    if payment is not None:
        features["payment"] = payment
    return ", ".join(f"{name}=({' '.join(allowed)})" for name, allowed in features.items())


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class SecurityHeaders:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        match = request.resolver_match
        page = match.view_name if match else None
        payment: list[str] | None = None
        if page in STRIPE_PAGES:
            # django-csp writes these directives in place of the settings' ones.
            response._csp_replace = _widened(stripe_js_sources())  # type: ignore[attr-defined]
            payment = ["self", f'"{_origin(settings.STRIPE_JS_URL)}"']
        elif page in API_DOCS_PAGES:
            response._csp_replace = _widened({"img-src": ["data:"]})  # type: ignore[attr-defined]
        response.headers.setdefault("Permissions-Policy", permissions_policy(payment=payment))
        if "Cache-Control" not in response.headers:
            add_never_cache_headers(response)
        return response

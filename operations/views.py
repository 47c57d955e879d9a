"""Health endpoints for load balancers, orchestrators and scrapers: no secrets, no login.

`/healthz` and the verdict of `/readyz` are public (probes hold no token). The details of
`/readyz` (dependencies, backlogs) and `/metrics` (invoice and payment figures) go only to an
operator: a request bearing METRICS_TOKEN, or one from this host when METRICS_ALLOW_LOOPBACK
says the host's loopback is only ours.
"""

import hmac
from ipaddress import ip_address

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from prometheus_client import CONTENT_TYPE_LATEST

from . import health, metrics

# Any of these means a proxy passed the request on: its peer address is the proxy's, and says
# nothing of who is asking. (A proxy need not add one, hence METRICS_ALLOW_LOOPBACK.)
PROXY_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_REAL_IP", "HTTP_FORWARDED")


def _bears_token(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if not token:
        return False  # no token configured: none can match (an empty one would)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def _from_trusted_loopback(request: HttpRequest) -> bool:
    if not settings.METRICS_ALLOW_LOOPBACK:
        return False
    if any(header in request.META for header in PROXY_HEADERS):
        return False
    try:
        return ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


def is_operator(request: HttpRequest) -> bool:
    """May see the business figures: the scraper's token, or the host itself (see above)."""
    return _bears_token(request) or _from_trusted_loopback(request)


@never_cache
def healthz(request):
    """The process is up and serving (a liveness probe: nothing else is asked)."""
    return JsonResponse({"ok": True})


@never_cache
def readyz(request):
    """Every dependency answers and no queue is stuck: 200, else 503. The public gets one word;
    an operator gets every check with its figures."""
    report = health.readiness()
    status = 200 if report["ok"] else 503
    if is_operator(request):
        return JsonResponse(report, status=status)
    return HttpResponse(
        "ok" if report["ok"] else "unavailable",
        status=status,
        content_type="text/plain; charset=utf-8",
    )


@never_cache
def metrics_view(request):
    """Prometheus' text format. Anyone else gets a 404: the figures are business data, and a
    404 tells a prober nothing more than that no such page is theirs."""
    if not is_operator(request):
        raise Http404
    return HttpResponse(metrics.exposition(), content_type=CONTENT_TYPE_LATEST)

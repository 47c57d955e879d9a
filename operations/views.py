"""Health endpoints for load balancers and orchestrators: JSON, no secrets, no login."""

import hmac
from ipaddress import ip_address

from django.conf import settings
from django.http import Http404, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from prometheus_client import CONTENT_TYPE_LATEST

from . import health, metrics


@never_cache
def healthz(request):
    """The process is up and serving (a liveness probe: nothing else is asked)."""
    return JsonResponse({"ok": True})


@never_cache
def readyz(request):
    """Every dependency answers and no queue is stuck: 200, else 503 with what failed."""
    report = health.readiness()
    return JsonResponse(report, status=200 if report["ok"] else 503)


def _may_scrape(request) -> bool:
    """A scraper holding METRICS_TOKEN, or a request from loopback (a sidecar, an SSH tunnel)."""
    token = settings.METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if hmac.compare_digest(given.encode(), token.encode()):
            return True
    try:
        return ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


@never_cache
def metrics_view(request):
    """Prometheus' text format. Anyone else gets a 404: the figures are business data."""
    if not _may_scrape(request):
        raise Http404
    return HttpResponse(metrics.exposition(), content_type=CONTENT_TYPE_LATEST)

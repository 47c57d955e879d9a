"""Health endpoints for load balancers and orchestrators: JSON, no secrets, no login."""

from django.http import JsonResponse
from django.views.decorators.cache import never_cache

from . import health


@never_cache
def healthz(request):
    """The process is up and serving (a liveness probe: nothing else is asked)."""
    return JsonResponse({"ok": True})


@never_cache
def readyz(request):
    """Every dependency answers and no queue is stuck: 200, else 503 with what failed."""
    report = health.readiness()
    return JsonResponse(report, status=200 if report["ok"] else 503)

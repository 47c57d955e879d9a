"""What `/readyz` checks: each dependency and each queue, as plain dicts with no secrets.

Every check answers `{"ok": bool, ...figures}` and never raises: a probe that crashes tells an
orchestrator nothing. Thresholds come from the settings (READY_*), in seconds.
"""

import time
from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.db.models import Min
from django.utils import timezone

from billing import gateway
from billing.payments import collectable_invoices
from billing_portal.celery import app
from metering.models import Reevaluation

from .models import Heartbeat
from .tasks import SCHEDULER

# Stripe is asked at most this often per process: probes every few seconds from several load
# balancers must not become a steady stream of API calls.
_STRIPE_CACHE_SECONDS = 30.0
_stripe_seen: dict[str, float | bool] = {"at": -_STRIPE_CACHE_SECONDS, "ok": False}


def _timed(check: Callable[[], dict]) -> dict:
    started = time.monotonic()
    try:
        result = check()
    except Exception as exc:  # a probe reports, it does not crash
        result = {"ok": False, "error": type(exc).__name__}
    result["ms"] = round((time.monotonic() - started) * 1000, 1)
    return result


def database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"ok": True}


def broker() -> dict:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return {"ok": True, "mode": "in-process"}
    with app.connection_for_write(url=settings.CELERY_BROKER_URL) as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
    return {"ok": True, "mode": "broker"}


def stripe() -> dict:
    if time.monotonic() - float(_stripe_seen["at"]) > _STRIPE_CACHE_SECONDS:
        _stripe_seen["ok"] = gateway.reachable()
        _stripe_seen["at"] = time.monotonic()
    return {"ok": bool(_stripe_seen["ok"])}


def _age(then: datetime | None, now: datetime) -> int | None:
    return None if then is None else max(0, int((now - then).total_seconds()))


def scheduler(now: datetime) -> dict:
    beat = Heartbeat.objects.filter(name=SCHEDULER).values_list("beat_at", flat=True).first()
    age = _age(beat, now)
    limit = settings.READY_SCHEDULER_MAX_AGE
    return {"ok": age is not None and age <= limit, "last_beat_seconds_ago": age, "max": limit}


def reevaluation(now: datetime) -> dict:
    # Subjects set aside after failing wait on purpose (and are shown to operators); the lag is
    # that of the work that should be flowing.
    waiting = Reevaluation.objects.filter(attempts=0)
    oldest = waiting.aggregate(oldest=Min("marked_at"))["oldest"]
    age = _age(oldest, now)
    limit = settings.READY_REEVALUATION_MAX_LAG
    return {
        "ok": age is None or age <= limit,
        "oldest_seconds": age,
        "set_aside": Reevaluation.objects.filter(attempts__gt=0).count(),
        "max": limit,
    }


def outbox(now: datetime) -> dict:
    oldest = collectable_invoices().aggregate(oldest=Min("issued_at"))["oldest"]
    age = _age(oldest, now)
    limit = settings.READY_OUTBOX_MAX_AGE
    return {"ok": age is None or age <= limit, "oldest_seconds": age, "max": limit}


def readiness() -> dict:
    now = timezone.now()
    checks = {
        "database": _timed(database),
        "broker": _timed(broker),
        "stripe": _timed(stripe),
    }
    if checks["database"]["ok"]:
        checks["scheduler"] = _timed(lambda: scheduler(now))
        checks["reevaluation"] = _timed(lambda: reevaluation(now))
        checks["outbox"] = _timed(lambda: outbox(now))
    return {"ok": all(check["ok"] for check in checks.values()), "checks": checks}

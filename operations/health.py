"""What `/readyz` checks: each dependency and each queue, as plain dicts with no secrets.

Every check answers `{"ok": bool, ...figures}` and never raises: a probe that crashes tells an
orchestrator nothing. Thresholds come from the settings (READY_*), in seconds.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from celery import current_app
from django.conf import settings
from django.db import connection
from django.db.models import Count, Min, Q
from django.utils import timezone

from billing import gateway
from billing.payments import collectable_invoices
from metering import partitions as usage_partitions
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
    # The process's Celery app (billing_portal's, loaded with the settings), reached without
    # importing the top layer; the broker's URL is passed, so the check needs nothing else of it.
    with current_app.connection_for_write(url=settings.CELERY_BROKER_URL) as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
    return {"ok": True, "mode": "broker"}


def stripe() -> dict:
    if time.monotonic() - float(_stripe_seen["at"]) > _STRIPE_CACHE_SECONDS:
        _stripe_seen["ok"] = gateway.reachable()
        _stripe_seen["at"] = time.monotonic()
    return {"ok": bool(_stripe_seen["ok"])}


def _age(then: datetime | None, now: datetime) -> int | None:
    return None if then is None else max(0, int((now - then).total_seconds()))


@dataclass(frozen=True)
class Backlogs:
    """The work waiting in the database's queues: what /readyz judges and /metrics shows."""

    reevaluation_waiting: int
    reevaluation_set_aside: int
    reevaluation_lag: int | None  # seconds since the oldest waiting subject was marked
    outbox_waiting: int
    outbox_age: int | None  # seconds since the oldest uncharged invoice was issued


def backlogs(now: datetime) -> Backlogs:
    # Subjects set aside after failing wait on purpose (and are shown to operators); the lag is
    # that of the work that should be flowing.
    queue = Reevaluation.objects.aggregate(
        waiting=Count("pk", filter=Q(attempts=0)),
        set_aside=Count("pk", filter=Q(attempts__gt=0)),
        oldest=Min("marked_at", filter=Q(attempts=0)),
    )
    outbox = collectable_invoices().aggregate(waiting=Count("pk"), oldest=Min("issued_at"))
    return Backlogs(
        reevaluation_waiting=queue["waiting"],
        reevaluation_set_aside=queue["set_aside"],
        reevaluation_lag=_age(queue["oldest"], now),
        outbox_waiting=outbox["waiting"],
        outbox_age=_age(outbox["oldest"], now),
    )


def scheduler(now: datetime) -> dict:
    beat = Heartbeat.objects.filter(name=SCHEDULER).values_list("beat_at", flat=True).first()
    age = _age(beat, now)
    limit = settings.READY_SCHEDULER_MAX_AGE
    return {"ok": age is not None and age <= limit, "last_beat_seconds_ago": age, "max": limit}


def reevaluation(queued: Backlogs) -> dict:
    age, limit = queued.reevaluation_lag, settings.READY_REEVALUATION_MAX_LAG
    return {
        "ok": age is None or age <= limit,
        "oldest_seconds": age,
        "set_aside": queued.reevaluation_set_aside,
        "max": limit,
    }


def outbox(queued: Backlogs) -> dict:
    age, limit = queued.outbox_age, settings.READY_OUTBOX_MAX_AGE
    return {"ok": age is None or age <= limit, "oldest_seconds": age, "max": limit}


def partitions(now: datetime) -> dict:
    if connection.vendor != "postgresql":
        return {"ok": True, "mode": "unpartitioned"}
    missing = usage_partitions.partitions_missing(now=now)
    return {"ok": not missing, "missing": missing}


def readiness() -> dict:
    now = timezone.now()
    checks = {
        "database": _timed(database),
        "broker": _timed(broker),
        "stripe": _timed(stripe),
    }
    if checks["database"]["ok"]:
        checks["scheduler"] = _timed(lambda: scheduler(now))
        queued = backlogs(now)
        checks["reevaluation"] = _timed(lambda: reevaluation(queued))
        checks["outbox"] = _timed(lambda: outbox(queued))
        checks["partitions"] = _timed(lambda: partitions(now))
    return {"ok": all(check["ok"] for check in checks.values()), "checks": checks}

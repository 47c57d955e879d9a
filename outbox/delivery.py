"""Sending deliveries: signed, in sequence order per account, retried with exponential backoff
for 3 days.

Order: a delivery waits while an earlier event of the same account is still pending for the
same endpoint, so a partner receives an account's events in sequence order (a replay is an
explicit resend of an old event and does not wait). When the endpoint is down, that account's
later events wait with it; once the first gets through the rest follow in the same pass.
"""

import json
import logging
import time
from datetime import datetime, timedelta

import requests
from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from retries import Exponential

from . import signing
from .models import Delivery
from .public_only import not_public_cause, public_session

logger = logging.getLogger(__name__)

# After the n-th failed attempt: 1 min, 2, 4, 8... doubling up to 6 hours.
RETRY_BACKOFF = Exponential(first=timedelta(minutes=1), cap=timedelta(hours=6))
GIVE_UP_AFTER = timedelta(days=3)
TIMEOUT_SECONDS = 10
# A claimed delivery is not taken by another worker for this long (the send's time limit).
LEASE = timedelta(seconds=TIMEOUT_SECONDS * 3)


def body_of(delivery: Delivery) -> bytes:
    event = delivery.event
    return json.dumps(
        {
            "id": event.public_id,
            "type": event.type,
            "created_at": event.created_at.isoformat().replace("+00:00", "Z"),
            "account": event.data.get("account"),
            "sequence": event.sequence,
            "data": event.data,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


_sessions: dict[bool, requests.Session] = {}


def _session() -> requests.Session:
    """One session per process (connections to an endpoint are kept alive between deliveries),
    public addresses only unless WEBHOOK_ALLOW_PRIVATE (outbox/public_only.py)."""
    allow_private = settings.WEBHOOK_ALLOW_PRIVATE
    if allow_private not in _sessions:
        _sessions[allow_private] = requests.Session() if allow_private else public_session()
    return _sessions[allow_private]


def http_post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST and return the status code (tests replace this)."""
    response = _session().post(
        url, data=body, headers=headers, timeout=TIMEOUT_SECONDS, allow_redirects=False
    )
    return response.status_code


def _due(endpoint_id: int, as_of: datetime):
    earlier = Delivery.objects.filter(
        endpoint_id=OuterRef("endpoint_id"),
        account_id=OuterRef("account_id"),
        sequence__lt=OuterRef("sequence"),
        status=Delivery.Status.PENDING,
        replay_of__isnull=True,
    )
    return (
        Delivery.objects.filter(
            endpoint_id=endpoint_id,
            status=Delivery.Status.PENDING,
            next_attempt_at__lte=as_of,
            endpoint__deleted_at__isnull=True,
        )
        .filter(Q(replay_of__isnull=False) | ~Exists(earlier))
        .select_related("event", "endpoint")
        .order_by("account_id", "sequence", "pk")
    )


def endpoint_deliver(*, endpoint_id: int, as_of: datetime | None = None, limit: int = 500) -> int:
    """Send what is due to one endpoint, in order. Returns the number of attempts made."""
    tried = 0
    while tried < limit:
        now = as_of or timezone.now()
        delivery = _due(endpoint_id, now).first()
        if delivery is None:
            break
        claimed = Delivery.objects.filter(
            pk=delivery.pk,
            status=Delivery.Status.PENDING,
            next_attempt_at=delivery.next_attempt_at,
        ).update(next_attempt_at=now + LEASE)
        if not claimed:
            continue  # another worker took it
        tried += 1
        if not delivery_attempt(delivery=delivery, now=now):
            # Later events of this account wait; other accounts' may still go.
            continue
    return tried


def delivery_attempt(*, delivery: Delivery, now: datetime) -> bool:
    body = body_of(delivery)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "billing-portal-webhooks/1",
        signing.HEADER: signing.sign(
            secret=delivery.endpoint.secret, body=body, timestamp=int(time.time())
        ),
        "Webhook-Id": delivery.event.public_id,
    }
    code, error = None, ""
    try:
        code = http_post(delivery.endpoint.url, body, headers)
        if not 200 <= code < 300:
            error = f"the endpoint answered {code}"
    except requests.RequestException as exc:
        refused = not_public_cause(exc)
        error = (str(refused) if refused else f"{type(exc).__name__}: {exc}")[:500]
    attempts = delivery.attempts + 1
    changes = {
        "attempts": attempts,
        "last_attempt_at": now,
        "last_status_code": code,
        "last_error": error,
    }
    if not error:
        changes.update(status=Delivery.Status.DELIVERED, delivered_at=now, next_attempt_at=None)
    else:
        retry_at = now + RETRY_BACKOFF.wait(attempts)
        if retry_at > delivery.created_at + GIVE_UP_AFTER:
            changes.update(status=Delivery.Status.FAILED, next_attempt_at=None)
        else:
            changes.update(next_attempt_at=retry_at)
    Delivery.objects.filter(pk=delivery.pk).update(**changes)
    return not error


def endpoints_due(*, as_of: datetime | None = None) -> list[int]:
    """Endpoints with something to send now (the periodic sweep wakes one task each)."""
    as_of = as_of or timezone.now()
    return list(
        Delivery.objects.filter(
            status=Delivery.Status.PENDING,
            next_attempt_at__lte=as_of,
            endpoint__deleted_at__isnull=True,
        )
        .values_list("endpoint_id", flat=True)
        .distinct()
        .order_by("endpoint_id")
    )

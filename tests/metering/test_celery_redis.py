"""The re-evaluation task through a real Celery worker and Redis broker, as in production."""

import os
import time
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from celery.contrib.testing.worker import start_worker

from billing_portal.celery import app
from metering.models import Charge, Reevaluation

from .helpers import celery_configured

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def redis_worker(settings):
    """A worker thread consuming the `ingest` queue from Redis; tasks leave the process."""
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).flushdb()
    except redis.ConnectionError:
        pytest.fail(f"Redis is not reachable at {REDIS_URL}: the suite needs it (see README)")
    # Through celery_configured: a plain app.conf.update(broker_url=...) is ignored (Django's
    # CELERY_* settings win), and this test used to pass with the task run in-process.
    with (
        celery_configured(broker_url=REDIS_URL, task_always_eager=False),
        start_worker(app, queues=["ingest"], pool="solo", perform_ping_check=False),
    ):
        yield


@pytest.mark.django_db(transaction=True)
def test_H1_events_posted_to_the_api_are_evaluated_by_a_worker_over_redis(
    make_account, partner_api, redis_worker
):
    assert not app.conf.task_always_eager and app.conf.broker_url == REDIS_URL
    with time_machine.travel(datetime.now(UTC) - timedelta(days=1)):  # subscribed before
        make_account(slug="shop")
    at = datetime.now(UTC) - timedelta(hours=1)
    events = [
        {
            "id": "e1",
            "account": "shop",
            "type": "message",
            "ticket": "T1",
            "channel": "email",
            "author": "customer",
            "occurred_at": at.isoformat(),
        },
        {
            "id": "e2",
            "account": "shop",
            "type": "message",
            "ticket": "T1",
            "channel": "email",
            "author": "agent",
            "occurred_at": (at + timedelta(minutes=5)).isoformat(),
        },
    ]
    response = partner_api.post("/api/v1/events", {"events": events}, format="json")
    assert response.status_code == 202
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not Charge.objects.filter(subject="T1").exists():
        time.sleep(0.1)
    charge = Charge.objects.get(subject="T1", meter="helpdesk_tickets")
    assert charge.status == "final" and "H1" in charge.rules
    assert not Reevaluation.objects.exists()

"""One re-evaluation task waits at a time (issue 28): ingests that find one queued and not
started send none, and that task, once it runs, evaluates their events too."""

import os
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from metering import services
from metering.models import Charge, Reevaluation
from metering.tasks import reevaluate_pending_task

from .helpers import redis_broker

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)


@pytest.fixture
def broker():
    """Tasks sent to Redis and left there (no worker): the test runs them itself."""
    with redis_broker(REDIS_URL) as client:
        yield client


def queued(client) -> int:
    return client.llen("ingest")  # the `ingest` queue (CELERY_TASK_ROUTES), a Redis list


def message(event_id: str, ticket: str) -> dict:
    return {
        "id": event_id,
        "account": "shop",
        "type": "message",
        "occurred_at": (NOW - timedelta(hours=1)).isoformat(),
        "ticket": ticket,
        "channel": "email",
        "author": "customer",
    }


def test_ingests_while_a_task_waits_send_none_and_that_task_bills_them_all(
    make_account, partner_api, broker, django_capture_on_commit_callbacks
):
    with time_machine.travel(NOW - timedelta(days=1), tick=False):
        make_account(slug="shop")
    with time_machine.travel(NOW, tick=False):
        for n, ticket in enumerate(["T1", "T2", "T3"]):
            with django_capture_on_commit_callbacks(execute=True):
                response = partner_api.post(
                    "/api/v1/events", {"events": [message(f"e{n}", ticket)]}, format="json"
                )
            assert response.status_code == 202
        assert queued(broker) == 1  # the first ingest's task; the other two found it waiting
        assert Reevaluation.objects.count() == 3
        reevaluate_pending_task()  # the worker takes it: clears the flag, drains the queue
    assert not Reevaluation.objects.exists()
    assert set(
        Charge.objects.filter(meter="helpdesk_tickets").values_list("subject", flat=True)
    ) == {
        "T1",
        "T2",
        "T3",
    }
    # Started, the task no longer counts as waiting: the next ingest sends one of its own.
    with django_capture_on_commit_callbacks(execute=True):
        services._enqueue_reevaluation()
    assert queued(broker) == 2


def test_a_task_lost_before_it_started_holds_sending_back_for_seconds_only(broker):
    services._enqueue_reevaluation()
    services._enqueue_reevaluation()
    assert queued(broker) == 1
    ttl = broker.ttl(services.REEVALUATION_QUEUED_FLAG)
    assert 0 < ttl <= services.REEVALUATION_QUEUED_SECONDS
    broker.delete("ingest")  # the broker lost it: once the flag expires, the next one is sent
    broker.delete(services.REEVALUATION_QUEUED_FLAG)
    services._enqueue_reevaluation()
    assert queued(broker) == 1

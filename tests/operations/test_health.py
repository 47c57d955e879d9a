"""`/healthz` and `/readyz` as an orchestrator and an operator see them: no secrets, each
dependency down in turn makes readiness fail (503) and tells the operator which; the public gets
only the verdict (issue 22, item 4)."""

import os
from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from metering import partitions
from metering.models import Reevaluation
from operations import health
from operations.models import Heartbeat
from operations.tasks import heartbeat_task
from tests.billing.test_money_safety import issued_unpaid
from tests.stripe_standin import free_port

pytestmark = pytest.mark.django_db

OPERATOR_TOKEN = "ready-scrape-token-7f3a9c"


@pytest.fixture
def ready(stripe_standin, settings):
    """A portal whose every dependency answers: stand-in up, a fresh heartbeat, no backlog."""
    health._stripe_seen["at"] = -1e9  # each test asks Stripe afresh
    heartbeat_task()
    partitions.partitions_ensure()  # beat's daily job (the suite may have crossed a month end)
    settings.METRICS_TOKEN = OPERATOR_TOKEN
    settings.METRICS_ALLOW_LOOPBACK = False
    return settings


def readyz(client) -> tuple[int, dict]:
    """As an operator (or a scraper) holding the token sees it: every check."""
    response = client.get("/readyz", HTTP_AUTHORIZATION=f"Bearer {OPERATOR_TOKEN}")
    assert response["Content-Type"] == "application/json"
    return response.status_code, response.json()


def public_readyz(client, **headers) -> tuple[int, str]:
    response = client.get("/readyz", **headers)
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    return response.status_code, response.content.decode()


def test_healthz_answers_without_asking_anything_else(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"ok": True}


def test_readyz_is_200_when_everything_answers_and_shows_no_secret(client, ready):
    ready.SECRET_KEY = "kP3-vT9zQw1-mR7yL0sX4bN8cJ2hF6dG5aE-never-shown"
    status, body = readyz(client)
    assert status == 200, body
    assert set(body["checks"]) == {
        "database",
        "broker",
        "stripe",
        "scheduler",
        "reevaluation",
        "outbox",
        "partitions",
    }
    assert body["checks"]["scheduler"]["last_beat_seconds_ago"] <= 1
    text = str(body)
    for secret in (ready.SECRET_KEY, ready.STRIPE_API_KEY, ready.STRIPE_API_BASE, OPERATOR_TOKEN):
        assert secret not in text


def test_readyz_tells_the_public_only_whether_the_portal_is_ready(client, ready):
    assert public_readyz(client, REMOTE_ADDR="203.0.113.9") == (200, "ok")
    assert public_readyz(client, HTTP_AUTHORIZATION="Bearer wrong-token") == (200, "ok")

    Heartbeat.objects.all().delete()  # beat never ran: not ready
    status, body = public_readyz(client, REMOTE_ADDR="203.0.113.9")
    assert (status, body) == (503, "unavailable")
    status, details = readyz(client)  # the operator sees why
    assert status == 503 and details["checks"]["scheduler"]["ok"] is False


def test_readyz_from_loopback_behind_a_proxy_shows_no_details(client, ready):
    """nginx on the same host: every visitor's request reaches us from 127.0.0.1."""
    ready.METRICS_ALLOW_LOOPBACK = True
    for proxied in (
        {"HTTP_X_FORWARDED_FOR": "198.51.100.4"},
        {"HTTP_X_REAL_IP": "198.51.100.4"},
        {"HTTP_FORWARDED": "for=198.51.100.4;proto=https"},
    ):
        # One word: no dependency, backlog or figure named.
        assert public_readyz(client, REMOTE_ADDR="127.0.0.1", **proxied) == (200, "ok"), proxied

    # The host's own probe (no proxy in between) sees the details while the setting allows it.
    response = client.get("/readyz", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200 and "database" in response.json()["checks"]
    ready.METRICS_ALLOW_LOOPBACK = False
    assert public_readyz(client, REMOTE_ADDR="127.0.0.1") == (200, "ok")


def test_readyz_fails_when_the_database_does_not_answer(client, ready):
    def refuse(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    with connection.execute_wrapper(refuse):
        status, body = readyz(client)
    assert status == 503
    assert body["checks"]["database"] == {
        "ok": False,
        "error": "OperationalError",
        "ms": body["checks"]["database"]["ms"],
    }
    assert "scheduler" not in body["checks"]  # nothing else is asked of a dead database


def test_readyz_fails_when_the_broker_does_not_answer(client, ready):
    ready.CELERY_TASK_ALWAYS_EAGER = False
    ready.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    status, body = readyz(client)
    assert status == 503
    assert body["checks"]["broker"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True


def test_readyz_fails_when_stripe_does_not_answer(client, ready):
    ready.STRIPE_API_BASE = f"http://127.0.0.1:{free_port()}"
    status, body = readyz(client)
    assert status == 503 and body["checks"]["stripe"] == {
        "ok": False,
        "ms": body["checks"]["stripe"]["ms"],
    }


def test_readyz_fails_when_the_scheduler_has_stopped(client, ready):
    Heartbeat.objects.update(beat_at=timezone.now() - timedelta(minutes=4))
    status, body = readyz(client)
    assert status == 503
    assert body["checks"]["scheduler"]["ok"] is False
    assert body["checks"]["scheduler"]["last_beat_seconds_ago"] >= 240

    Heartbeat.objects.all().delete()  # never beaten: a beat that never started
    status, body = readyz(client)
    assert status == 503 and body["checks"]["scheduler"]["last_beat_seconds_ago"] is None


def test_readyz_fails_when_re_evaluation_lags(client, ready, account):
    Reevaluation.objects.create(
        account=account,
        kind="ticket",
        subject="T-1",
        marked_at=timezone.now() - timedelta(minutes=11),
    )
    status, body = readyz(client)
    assert status == 503
    assert body["checks"]["reevaluation"]["ok"] is False
    assert body["checks"]["reevaluation"]["oldest_seconds"] >= 660


def test_a_subject_set_aside_after_failing_does_not_fail_readiness(client, ready, account):
    Reevaluation.objects.create(
        account=account,
        kind="ticket",
        subject="T-1",
        marked_at=timezone.now() - timedelta(hours=3),
        attempts=2,
    )
    status, body = readyz(client)
    assert status == 200
    assert body["checks"]["reevaluation"]["set_aside"] == 1


def test_readyz_fails_when_issued_invoices_wait_to_be_charged(
    client, ready, make_account, stripe_standin
):
    issued_unpaid(make_account, stripe_standin)  # issued a month ago, never sent to Stripe
    status, body = readyz(client)
    assert status == 503
    assert body["checks"]["outbox"]["ok"] is False
    assert body["checks"]["outbox"]["oldest_seconds"] > 900


def test_readyz_asks_a_real_broker_when_one_is_configured(client, ready):
    ready.CELERY_TASK_ALWAYS_EAGER = False
    ready.CELERY_BROKER_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    status, body = readyz(client)
    assert status == 200, body
    assert body["checks"]["broker"]["mode"] == "broker"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="partitions are PostgreSQL's")
def test_readyz_fails_when_next_months_partitions_were_not_made_and_recovers_after_the_daily_job(
    client, ready
):
    next_month = partitions.month_add(timezone.now(), 1).date()
    names = [partitions.Partition(table, next_month).name for table in partitions.TABLES]
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute(f"DROP TABLE {name}")  # as if beat's daily job had never run
    status, body = readyz(client)
    assert status == 503
    assert body["checks"]["partitions"]["ok"] is False
    assert body["checks"]["partitions"]["missing"] == names

    partitions.partitions_maintain()
    status, body = readyz(client)
    assert status == 200, body
    assert body["checks"]["partitions"] == {
        "ok": True,
        "missing": [],
        "ms": body["checks"]["partitions"]["ms"],
    }

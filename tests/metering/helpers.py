"""Ingest events the way the API does, then re-evaluate, for service-level tests; point Celery
at another broker."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from kombu import pools

from accounts.models import Account
from billing_portal.celery import app
from metering import services


def iso(at: datetime) -> str:
    return at.isoformat()


def ingest(account: Account, events: list[dict], *, now: datetime, as_of: datetime | None = None):
    """Store a batch for `account` at `now` and drain the re-evaluation queue as of `as_of`."""
    for event in events:
        event.setdefault("account", account.slug)
        if isinstance(event.get("occurred_at"), datetime):
            event["occurred_at"] = iso(event["occurred_at"])
    result = services.events_ingest(
        raw_events=events, accounts=Account.objects.all(), fixed_account=None, now=now
    )
    assert not result.rejected, result.rejected
    services.reevaluate_all_pending(as_of=as_of or now)
    return result


@contextmanager
def celery_configured(**values) -> Iterator[None]:
    """Override Celery settings (`broker_url=...`) for the block.

    The app reads Django's CELERY_* settings before its own keys, so a plain
    `app.conf.update(broker_url=...)` is silently ignored: set the prefixed keys. Connection and
    producer pools are built for one broker; drop them on the way in and out.
    """
    keys = {f"CELERY_{name.upper()}": value for name, value in values.items()}
    saved = {key: app.conf[key] for key in keys}

    def drop_pools() -> None:
        # kombu keeps its pools in a registry by broker: close and forget them all, or the next
        # user of this broker acquires from a closed pool.
        pools.reset()
        app._pool = None
        app.amqp._producer_pool = None

    drop_pools()
    app.conf.update(keys)
    try:
        yield
    finally:
        app.conf.update(saved)
        drop_pools()


@contextmanager
def redis_broker(url: str) -> Iterator[object]:
    """The test's Redis at `url`, emptied, as this process's Celery broker (tasks sent there are
    left for the test, not run in-process); emptied again after: a killed worker's
    unacknowledged tasks would otherwise wait there for the visibility timeout."""
    import pytest

    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.flushdb()
    except redis.ConnectionError:
        pytest.fail(f"Redis is not reachable at {url}: the suite needs it (see README)")
    with celery_configured(broker_url=url, task_always_eager=False):
        yield client
    client.flushdb()

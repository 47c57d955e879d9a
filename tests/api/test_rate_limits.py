"""Rate limits per key: 429 with Retry-After, ingest counted apart, shared through the cache
(local memory in the demo, Redis in production)."""

import os
from datetime import UTC, datetime

import pytest
import time_machine
from django.core.cache import caches

from accounts import ratelimit, services
from tests.conftest import client_with_key

# 10 s into a minute: the window ends in 50 s.
AT = datetime(2026, 11, 22, 12, 0, 10, tzinfo=UTC)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(params=["locmem", "redis"])
def cache_backend(request, settings):
    if request.param == "redis":
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": REDIS_URL,
            }
        }
    caches["default"].clear()
    settings.API_RATE_LIMITS = {"api": 3, "ingest": 5}
    yield request.param
    caches["default"].clear()


@pytest.fixture
def frozen():
    with time_machine.travel(AT, tick=False):
        yield


def test_past_the_limit_a_key_gets_429_with_retry_after(cache_backend, frozen, catalog, partner):
    api = client_with_key(services.api_key_create(partner=partner)[1])
    assert [api.get("/api/v1/plans").status_code for _ in range(3)] == [200, 200, 200]
    refused = api.get("/api/v1/plans")
    assert refused.status_code == 429
    assert refused["Retry-After"] == "50"
    assert refused.json()["error"]["code"] == "throttled"
    assert refused.json()["error"]["details"] == {"retry_after": 50}

    # Another key of the same partner has its own count; the next window starts afresh.
    other = client_with_key(services.api_key_create(partner=partner)[1])
    assert other.get("/api/v1/plans").status_code == 200
    with time_machine.travel(datetime(2026, 11, 22, 12, 1, 0, tzinfo=UTC), tick=False):
        assert api.get("/api/v1/plans").status_code == 200


def test_ingest_has_its_own_higher_limit(cache_backend, frozen, account, partner):
    api = client_with_key(services.api_key_create(partner=partner)[1])
    for _ in range(3):
        api.get("/api/v1/plans")
    assert api.get("/api/v1/plans").status_code == 429
    body = {"events": [{"id": "x"}]}  # rejected, but counted like any batch
    codes = [api.post("/api/v1/events", body, format="json").status_code for _ in range(6)]
    assert codes[:5] == [400] * 5 and codes[5] == 429


def test_the_count_is_one_cache_round_trip_on_redis(settings, frozen):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
    cache = caches["default"]
    cache.clear()
    client = cache._cache.get_client(None, write=True)
    calls = []
    original = client.connection_pool.get_connection

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    client.connection_pool.get_connection = counting
    try:
        assert ratelimit.hit(key_id=1, bucket="api") == (1, 50.0)
        assert ratelimit.hit(key_id=1, bucket="api") == (2, 50.0)
    finally:
        client.connection_pool.get_connection = original
    assert len(calls) == 2  # one pipeline (INCR + EXPIRE NX) per request
    ttl = client.ttl(cache.make_and_validate_key(f"ratelimit:1:api:{int(AT.timestamp()) // 60}"))
    assert 0 < ttl <= 65
    cache.clear()

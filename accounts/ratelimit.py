"""Rate limits per API key: a fixed one-minute window counted in Django's cache.

The counter lives in the shared cache (Redis in production), so every worker of every server
counts against the same number; the embedded demo's local-memory cache counts per process,
which is what a single `runserver` needs. On Redis the check is one round trip (INCR and
EXPIRE NX in one pipeline); other backends use `incr`, falling back to `add` once per window.

If the cache is down the request is let through (logged): a rate limit protects the service,
and refusing every partner because the counter is unreachable would be the larger outage.
"""

import logging
import math
import time

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.throttling import BaseThrottle

from .principals import KeyPrincipal

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60


def bucket_of(request, view) -> str:
    """The event stream has its own, higher limit; everything else shares one."""
    if getattr(view, "ingest", False) and request.method == "POST":
        return "ingest"
    return "api"


def hit(*, key_id: int, bucket: str, now: float | None = None) -> tuple[int, float]:
    """Count one request for the key in the current window: (count so far, seconds left)."""
    now = time.time() if now is None else now
    window = int(now // WINDOW_SECONDS)
    left = (window + 1) * WINDOW_SECONDS - now
    cache = caches[settings.API_RATE_LIMIT_CACHE]
    name = f"ratelimit:{key_id}:{bucket}:{window}"
    if isinstance(cache, RedisCache):
        full = cache.make_and_validate_key(name)
        # RedisCache's client is private (`_cache`, absent from django-stubs); the public API has
        # no pipeline, and INCR + EXPIRE NX must go in one round trip.
        pipe = cache._cache.get_client(full, write=True).pipeline(transaction=False)  # type: ignore[attr-defined]
        pipe.incr(full)
        pipe.expire(full, WINDOW_SECONDS + 5, nx=True)
        count, _ = pipe.execute()
        return int(count), left
    try:
        return cache.incr(name), left
    except ValueError:  # the first request of the window
        if cache.add(name, 1, timeout=WINDOW_SECONDS + 5):
            return 1, left
        return cache.incr(name), left


class KeyRateThrottle(BaseThrottle):
    """Answers 429 with `Retry-After` (seconds to the next window) past the key's limit."""

    def allow_request(self, request, view) -> bool:
        principal = request.user
        if not isinstance(principal, KeyPrincipal):
            return True
        bucket = bucket_of(request, view)
        limit = settings.API_RATE_LIMITS[bucket]
        try:
            count, left = hit(key_id=principal.key.pk, bucket=bucket)
        except Exception:
            logger.exception("rate limit cache unreachable; request let through")
            return True
        self._wait = left
        return count <= limit

    def wait(self) -> int:
        return max(1, math.ceil(self._wait))

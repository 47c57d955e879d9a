"""Beat guarded by a lock: however many beats run, only the one holding the lock schedules.

Two beats (a deploy that overlaps old and new, an operator's second `celery beat`) would send
every periodic task twice. The tasks are safe to run twice, but the promise is one scheduler.
The lock is a Redis key in the broker, set with a TTL (`BEAT_LOCK_TTL`) and renewed by its
holder on every tick; the others keep trying, so when the holder dies another takes over
within one TTL. Without a Redis broker (the demo runs tasks in-process) there is nothing to
share and no lock is taken.
"""

import contextlib
import logging
import os
import socket
import uuid

import redis
from celery.beat import PersistentScheduler
from django.conf import settings

from billing_portal.startup import exit_on_incomplete_seller, exit_on_insecure_secret_key

logger = logging.getLogger(__name__)

LOCK_KEY = "billing_portal:beat-lock"
# Renew or release only a lock this beat still holds (the check and the write in one step).
_RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
)
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
    "else return 0 end"
)


class LockedScheduler(PersistentScheduler):
    def __init__(self, *args, **kwargs):
        # Beat signs nothing itself, but it is a production process like the workers: it
        # exits at once without DEBUG and with a weak SECRET_KEY, or with an incomplete seller,
        # before any task is sent. `celery beat` builds its scheduler before the loop (and
        # before its banner).
        exit_on_insecure_secret_key()
        exit_on_incomplete_seller()
        self.lock_ttl = float(settings.BEAT_LOCK_TTL)
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        self.holding = False
        self._redis = None
        super().__init__(*args, **kwargs)

    def _client(self) -> redis.Redis | None:
        url = str(self.app.conf.broker_url or "")
        if not url.startswith(("redis://", "rediss://")):
            return None
        if self._redis is None:
            self._redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        return self._redis

    def lock_held(self) -> bool:
        """Take or renew the lock; False when another beat holds it or Redis cannot say."""
        client = self._client()
        if client is None:
            return True
        ttl_ms = int(self.lock_ttl * 1000)
        was = self.holding
        try:
            if self.holding:
                # Redis hands a script its ARGV as strings whatever we send: send one.
                self.holding = bool(client.eval(_RENEW, 1, LOCK_KEY, self.token, str(ttl_ms)))
            if not self.holding:
                self.holding = bool(client.set(LOCK_KEY, self.token, nx=True, px=ttl_ms))
        except redis.RedisError as exc:
            logger.warning("beat lock unavailable (%s): not scheduling", exc)
            self.holding = False
        if self.holding != was:
            logger.warning(
                "beat %s the lock: %s",
                "took" if self.holding else "lost",
                "this beat schedules" if self.holding else "another beat schedules",
            )
        return self.holding

    def tick(self, *args, **kwargs) -> float:
        # Ticks come at least every third of the TTL, so the holder renews before it expires.
        if not self.lock_held():
            return self.lock_ttl / 3
        return min(super().tick(*args, **kwargs), self.lock_ttl / 3)

    def close(self) -> None:
        client = self._client()
        if client is not None and self.holding:
            with contextlib.suppress(redis.RedisError):  # else it expires within one TTL
                client.eval(_RELEASE, 1, LOCK_KEY, self.token)
            self.holding = False
        super().close()

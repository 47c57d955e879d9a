"""The demo's session engine: database sessions whose expiry is counted in real time.

Django stores a session's `expire_date` as now + SESSION_COOKIE_AGE (two weeks) and forgets
every session whose date has passed. On the demo clock, `make demo-advance DAYS=31` moved "now"
a month past every session, so each browser was logged out a minute after logging in, though its
cookie (aged by the browser, in real time) was still good. Reading and writing the expiry on the
wall clock keeps the two in step; everything else keeps the demo's time.

The settings pick this engine only where the demo clock is installed (billing_portal/settings.py).
"""

from datetime import datetime
from typing import Any

from django.contrib.sessions.backends import db

from billing_portal import demo_clock


class SessionStore(db.SessionStore):
    def load(self) -> dict[str, Any]:
        with demo_clock.real_time():
            return super().load()

    def save(self, must_create: bool = False) -> None:
        with demo_clock.real_time():
            super().save(must_create=must_create)

    def get_expiry_age(self, **kwargs: Any) -> int:
        with demo_clock.real_time():
            return super().get_expiry_age(**kwargs)

    def get_expiry_date(self, **kwargs: Any) -> datetime:
        with demo_clock.real_time():
            return super().get_expiry_date(**kwargs)

    @classmethod
    def clear_expired(cls) -> None:
        with demo_clock.real_time():
            super().clear_expired()

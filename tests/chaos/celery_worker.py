"""The portal's Celery app, as `celery -A tests.chaos.celery_worker worker` runs it for the chaos
suite (test-only). With CHAOS_KILL_POINT set, every pool process dies (SIGKILL) at that point of
the charge path the first time a charge reaches it, after leaving a marker file in
CHAOS_MARK_DIR: the test counts the markers to know how many charges were cut there. Without
it, the worker is the production one, on the test's clock (CHAOS_NOW).
"""

import os
from pathlib import Path

from celery.signals import worker_process_init

from billing_portal.celery import app
from tests.chaos.kill_points import arm, clock_follow, die

__all__ = ["app"]


def mark_then_die(point: str) -> None:
    # The marker is written before the kill, so a marker means the charge got that far.
    (Path(os.environ["CHAOS_MARK_DIR"]) / f"{point}-{os.getpid()}").touch()
    die()


@worker_process_init.connect
def _arm_pool_process(**kwargs) -> None:
    # In each pool process, not in the parent: a process the pool starts to replace a killed
    # one is armed too, and the parent (which fetches and acknowledges tasks) never dies here.
    clock_follow()
    point = os.environ.get("CHAOS_KILL_POINT")
    if point:
        import django

        django.setup()  # already done by Celery's Django fixup; the payment module needs it
        arm(point, lambda: mark_then_die(point))

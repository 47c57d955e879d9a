"""Killing the charge path at one point, for the chaos suite: a process dies (SIGKILL, no
cleanup) where a crash would hurt most. The points are reached by wrapping the payment module's
steps in a test-only process (the Celery worker of `celery_worker.py`): production code has no
kill switch.

Points: after_claim (claimed, Stripe not called), after_stripe (Stripe answered, nothing
recorded), before_commit (the answer written inside the transaction, not committed), after_commit
(recorded; the process dies before it would acknowledge its task).
"""

import os
import signal
import time
from collections.abc import Callable
from datetime import datetime, timedelta

POINTS = ("after_claim", "after_stripe", "before_commit", "after_commit")


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def clock_env(now: datetime, real_epoch: float) -> dict[str, str]:
    """The test's clock (perhaps moved by --clock), for a process it starts: its instant and
    the real time at which it was read, so that a process started later is not behind it."""
    return {"CHAOS_NOW": now.isoformat(), "CHAOS_NOW_REAL": repr(real_epoch)}


def clock_follow() -> None:
    """Move this process's clock to the test's, ticking: attempts are dated as the test
    process dates them."""
    if not os.environ.get("CHAOS_NOW"):
        return
    import time_machine

    now = datetime.fromisoformat(os.environ["CHAOS_NOW"])
    elapsed = time.time() - float(os.environ["CHAOS_NOW_REAL"])  # this process's clock is real
    time_machine.travel(now + timedelta(seconds=max(elapsed, 0.0)), tick=True).start()


def arm(point: str, reached: Callable[[], None]) -> None:
    """Make the charge path call `reached` (which kills the process) at `point`."""
    from billing import gateway, payments

    if point == "after_claim":
        payments._charge = lambda attempt: reached()
    elif point == "after_stripe":
        real_charge = gateway.charge_off_session

        def charge_then_die(**kwargs):
            real_charge(**kwargs)
            reached()

        gateway.charge_off_session = charge_then_die
    elif point == "before_commit":
        payments._paid = lambda *args: reached()  # inside _apply's transaction, after the save
    elif point == "after_commit":
        real_apply = payments._apply

        def apply_then_die(*args):
            real_apply(*args)
            reached()

        payments._apply = apply_then_die
    else:
        raise ValueError(f"unknown point {point!r}; one of {', '.join(POINTS)}")

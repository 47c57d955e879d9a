"""A charge worker that dies (SIGKILL, no cleanup) at one point of the charge path, for the
chaos suite. The points are reached by wrapping the payment module's steps here, in this
test-only process: production code has no kill switch.

    python -m tests.chaos.charge_worker <invoice id> <point>

Points: after_claim (claimed, Stripe not called), after_stripe (Stripe answered, nothing
recorded), before_commit (the answer written inside the transaction, not committed), after_commit
(recorded; the process dies before it would acknowledge its task).
"""

import os
import signal
import sys

POINTS = ("after_claim", "after_stripe", "before_commit", "after_commit")


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(invoice_id: int, point: str) -> None:
    import django

    if os.environ.get("CHAOS_NOW"):
        # The test's clock (moved by --clock): attempts are dated as the test process dates them.
        from datetime import datetime

        import time_machine

        time_machine.travel(datetime.fromisoformat(os.environ["CHAOS_NOW"]), tick=True).start()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_portal.settings")
    django.setup()
    from billing import gateway, payments

    if point == "after_claim":
        payments._charge = lambda attempt: die()
    elif point == "after_stripe":
        real_charge = gateway.charge_off_session

        def charge_then_die(**kwargs):
            real_charge(**kwargs)
            die()

        gateway.charge_off_session = charge_then_die
    elif point == "before_commit":
        payments._paid = lambda *args: die()  # inside _apply's transaction, after the save
    elif point == "after_commit":
        real_apply = payments._apply

        def apply_then_die(*args):
            real_apply(*args)
            die()

        payments._apply = apply_then_die
    else:
        raise SystemExit(f"unknown point {point!r}; one of {', '.join(POINTS)}")
    payments.invoice_charge(invoice_id=invoice_id, trigger="automatic")
    raise SystemExit("the charge path returned without reaching the kill point")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])

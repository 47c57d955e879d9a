"""Fixtures of the Billing & Usage page tests: the shop opened at T0 with its first invoice
issued, seen mid-period. Times are fixed, never today's date."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from billing.run import run_billing

T0 = datetime(2026, 11, 1, tzinfo=UTC)  # a 30-day period: Nov 1 → Dec 1
HALF = T0 + timedelta(days=15)


@pytest.fixture
def account(make_account):
    """Overrides the conftest's: the shop (Basic, monthly) opened at T0, first invoice issued
    (open: no card yet, and on-commit charges do not run inside a test's transaction)."""
    with time_machine.travel(T0, tick=False):
        shop = make_account(slug="shop", plan="basic")
        run_billing(as_of=T0)
    return shop


def at(moment: datetime = HALF):
    return time_machine.travel(moment, tick=False)

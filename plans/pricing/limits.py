"""P5, P8: the integrations allowance and the spending cap, checked before acting."""

from __future__ import annotations

from .core import _count

# --- P5: integrations ----------------------------------------------------------------------


def integrations_within_plan(*, count: int, included: int | None) -> bool:
    """Whether a number of integrations fits the plan's allowance; None is unlimited (P5)."""
    return included is None or _count(count, "count") <= _count(included, "included")


# --- P8: spending cap -----------------------------------------------------------------------


def within_spending_cap(
    *, charge_minor: int, already_charged_in_period_minor: int, cap_minor: int | None
) -> bool:
    """Whether a charge fits under the account's approved spending cap for the period (P8)."""
    _count(charge_minor, "charge_minor")
    _count(already_charged_in_period_minor, "already_charged_in_period_minor")
    if cap_minor is None:
        return True
    return charge_minor + already_charged_in_period_minor <= _count(cap_minor, "cap_minor")

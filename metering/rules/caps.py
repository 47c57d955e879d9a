"""Hard caps at the account level (C2, and Z9 when the account chose to pause)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from .timeline import ordered_rules
from .types import NOT_COUNTED, RULE_IDS, Outcome


def apply_hard_cap(
    outcomes: Iterable[Outcome], *, limit: int, rule: str
) -> tuple[list[Outcome], list[Outcome]]:
    """Split one account's counted outcomes of a period into (billed, capped).

    The first `limit` by (billable_at, subject, unit) stay billed; the others are recorded
    but not billed: not_counted, billable_at kept, `rule` added to their rules.
    """
    if limit < 0:
        raise ValueError(f"a cap is a number of units, got {limit}")
    if rule not in RULE_IDS:
        raise ValueError(f"unknown rule id {rule!r}")
    counted = list(outcomes)
    if any(not outcome.counted for outcome in counted):
        raise ValueError("only counted outcomes can be capped")
    # Sorted here even though the caller is asked to sort: which unit is "first" must not
    # depend on the order rows came out of the database. Kind and meter only break ties.
    ordered = sorted(
        counted,
        key=lambda o: (o.billable_at, o.subject, o.unit, o.subject_kind, o.meter),
    )
    capped = [
        # A capped unit is not waiting for anything any more: no pending window.
        replace(o, status=NOT_COUNTED, pending_until=None, rules=ordered_rules((*o.rules, rule)))
        for o in ordered[limit:]
    ]
    return ordered[:limit], capped

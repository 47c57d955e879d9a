"""Counted units written the way re-evaluation writes them, for tests about what billing does
with units (the rules that count them are tested in tests/metering)."""

from datetime import datetime, timedelta
from itertools import count

from metering.models import Charge, ChargeStatus, SubjectKind
from plans import periods
from plans.models import Subscription

_subjects = count()


def counted(account, meter: str, n: int, at: datetime, *, recorded_at: datetime | None = None):
    """`n` final units on `meter` that became billable at `at` (one second apart), first
    counted at `recorded_at` (default: `at`)."""
    subscription = Subscription.objects.get(account=account, ended_at__isnull=True)
    start, _ = periods.usage_period_containing(
        subscription.billing_anchor, at, subscription.interval
    )
    Charge.objects.bulk_create(
        Charge(
            account=account,
            subject_kind=SubjectKind.TICKET,
            subject=f"u{next(_subjects)}",
            meter=meter,
            unit=1,
            status=ChargeStatus.FINAL,
            billable_at=at + timedelta(seconds=i),
            period_start=start,
            rules=["test"],
            evaluated_at=recorded_at or at,
            recorded_at=recorded_at or at,
        )
        for i in range(n)
    )

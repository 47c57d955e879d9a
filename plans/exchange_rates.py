"""Loading ECB euro reference rates into plans.ExchangeRate (docs/tax.md, "VAT in euros"):
the write path behind `manage.py ecb_rates_load` and the daily task (plans.tasks);
`plans.selectors.ecb_rate_on` is the read path.

A published ECB rate never changes: a file's rate already in the table is skipped, and one that
would change a row is refused with the whole file (an invoice may have frozen that rate).
Loading a file twice, or two loads at once, changes nothing more than one load.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from accounts.errors import DomainError
from audit.services import audit_entry, audit_record_many

from .models import ExchangeRate
from .tax.national import EcbRate


@dataclass(frozen=True)
class EcbRatesLoaded:
    loaded: tuple[EcbRate, ...] = ()
    already_loaded: tuple[EcbRate, ...] = ()


class EcbRatesRefused(DomainError):
    """Nothing was loaded: each problem names its rate."""

    code = "ecb_rates_refused"

    def __init__(self, problems: Sequence[str]):
        super().__init__("; ".join(problems), details={"problems": list(problems)})
        self.problems = tuple(problems)


def ecb_rates_load(
    *, rates: Sequence[EcbRate], source: str, now: datetime | None = None
) -> EcbRatesLoaded:
    """Add the rates the table lacks, skip those it has; refuse a file that changes one."""
    if not source.strip():
        raise EcbRatesRefused(["say where the rates come from (a URL or a file)"])
    now = now or timezone.now()
    with transaction.atomic(durable=True):
        existing = {
            (row.currency, row.published_on): row.units_per_eur
            for row in ExchangeRate.objects.filter(
                published_on__in={rate.published_on for rate in rates}
            )
        }
        changed = [
            f"{rate.published_on.isoformat()} {rate.currency}: {rate.units_per_eur} in the file, "
            f"{existing[key].normalize()} loaded; a published ECB rate does not change"
            for rate in rates
            if (key := (rate.currency, rate.published_on)) in existing
            and existing[key] != rate.units_per_eur
        ]
        if changed:
            raise EcbRatesRefused(changed)
        new = [rate for rate in rates if (rate.currency, rate.published_on) not in existing]
        # ignore_conflicts: a load running at the same time (the task and the command) may
        # insert the same day first; its row holds the same published rate.
        ExchangeRate.objects.bulk_create(
            [
                ExchangeRate(
                    published_on=rate.published_on,
                    currency=rate.currency,
                    units_per_eur=rate.units_per_eur,
                    source=source,
                    loaded_at=now,
                )
                for rate in new
            ],
            ignore_conflicts=True,
        )
        # The rows this load inserted (ignore_conflicts sets no pk): audited, one row each.
        inserted = ExchangeRate.objects.filter(
            published_on__in={rate.published_on for rate in new}, loaded_at=now, source=source
        ).order_by("published_on", "currency")
        audit_record_many(
            audit_entry(
                action="exchange_rate.load",
                obj=row,
                after={
                    "currency": row.currency,
                    "published_on": row.published_on.isoformat(),
                    "units_per_eur": format(row.units_per_eur.normalize(), "f"),
                    "source": row.source,
                },
                label=f"{row.currency} {row.published_on.isoformat()}",
                at=now,
            )
            for row in inserted
        )
    return EcbRatesLoaded(
        loaded=tuple(new),
        already_loaded=tuple(r for r in rates if (r.currency, r.published_on) in existing),
    )

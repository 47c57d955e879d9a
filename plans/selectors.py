"""Read paths for the catalog, subscriptions, the tax rate table and the ECB exchange rates."""

import time
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from django.db.models import Prefetch, QuerySet

from accounts.models import Account

from .models import (
    AddOn,
    AddOnTier,
    Allowance,
    Edition,
    ExchangeRate,
    Plan,
    Price,
    ScheduledChange,
    Subscription,
    TaxRateEntry,
    TaxRateKind,
)
from .tax import RateEntry, RateTable, eu_rates, us_rates
from .tax.national import EcbRate

_PUBLIC_PRICES = Prefetch("price_set", queryset=Price.objects.filter(account__isnull=True))
_PUBLIC_ALLOWANCES = Prefetch(
    "allowance_set", queryset=Allowance.objects.filter(account__isnull=True)
)


def catalog_plans() -> QuerySet[Plan]:
    return Plan.objects.filter(is_active=True).prefetch_related(_PUBLIC_PRICES, _PUBLIC_ALLOWANCES)


def catalog_addons() -> QuerySet[AddOn]:
    tiers = AddOnTier.objects.order_by("rank").prefetch_related(_PUBLIC_PRICES, _PUBLIC_ALLOWANCES)
    return AddOn.objects.filter(is_active=True).prefetch_related(Prefetch("tiers", queryset=tiers))


def catalog_editions() -> QuerySet[Edition]:
    return Edition.objects.prefetch_related(_PUBLIC_PRICES)


def subscription_current(*, account: Account) -> Subscription | None:
    """The account's live subscription, with its add-ons and pending changes."""
    return (
        Subscription.objects.filter(account=account, ended_at__isnull=True)
        .select_related("account", "plan", "edition")
        .prefetch_related("addons__tier__addon", "scheduled_changes")
        .first()
    )


def subscription_last_ended(*, account: Account) -> Subscription | None:
    """The account's last subscription when it ended (None while one is live, or when none
    ever was): what the pages and the API show after the end."""
    last = (
        Subscription.objects.filter(account=account)
        .select_related("account", "plan", "edition")
        .prefetch_related("addons__tier__addon", "scheduled_changes")
        .order_by("-started_at", "-pk")
        .first()
    )
    return last if last is not None and last.ended_at is not None else None


@dataclass(frozen=True)
class Course:
    """Where a subscription is headed at its cycle's end, in one word, so that every surface
    (the pages, the landing page, emails, the partner API) says one thing per state: one that
    ends never "renews".

    `at` is a boundary, an instant: the next cycle's first (renews), the end of service (ends),
    or when it ended (ended). Pages name it one way: the last day of service before it ("until
    Dec 31, 2026") and the first day of the new terms at it ("from Jan 1, 2027")."""

    state: Literal["renews", "ends", "ended"]
    at: datetime
    cancellation: ScheduledChange | None = None  # the scheduled or applied end


def subscription_course(subscription: Subscription) -> Course:
    """Renews, ends (a cancellation is scheduled) or ended. Reads the subscription's scheduled
    changes through `.all()`, so a prefetch (subscription_current) costs no query."""
    cancels = [c for c in subscription.scheduled_changes.all() if c.cancel]
    if subscription.ended_at is not None:
        applied = [c for c in cancels if c.status == ScheduledChange.Status.APPLIED]
        return Course("ended", subscription.ended_at, applied[-1] if applied else None)
    for change in cancels:
        if change.status == ScheduledChange.Status.SCHEDULED:
            return Course("ends", change.effective_at, change)
    return Course("renews", subscription.current_period_end)


# The tables as last read, and when (time.monotonic): issuing reads them for every invoice.
_TABLES: tuple[float, tuple[RateTable, RateTable]] | None = None
# How stale a process's tables may be. `manage.py tax_rates_load` runs in its own process, so
# web and worker processes see a load within this time; loads come well before their
# effective dates (docs/tax.md), and a correction of a rate in force within a minute.
TAX_RATE_TABLES_MAX_AGE_SECONDS = 60.0


def tax_rate_tables() -> tuple[RateTable, RateTable]:
    """The EU standard VAT rates and the US state rates in the database, in that order, as the
    pure tables `plans.tax.tax_decide` reads, read again once a minute at most (a start
    invoice is issued per subscription, and each would otherwise pay one query for them)."""
    global _TABLES
    now = time.monotonic()
    if _TABLES is None or now - _TABLES[0] > TAX_RATE_TABLES_MAX_AGE_SECONDS:
        _TABLES = (now, tax_rate_tables_read())
    return _TABLES[1]


def tax_rate_tables_forget() -> None:
    """The next read goes to the database (after a load in this process, and between tests)."""
    global _TABLES
    _TABLES = None


def tax_rate_tables_read() -> tuple[RateTable, RateTable]:
    """The EU standard VAT rates and the US state rates in the database, in that order (one
    query). A kind with no row at all reads the packaged file, the table's seed: only a
    database emptied under the migrations (a test's flush) has none, and there the seed is
    what migrate would have put."""
    places: dict[str, dict[str, list[RateEntry]]] = {kind: {} for kind in TaxRateKind.values}
    for row in TaxRateEntry.objects.order_by("kind", "code", "effective_from"):
        places[row.kind].setdefault(row.code, []).append(
            RateEntry(effective_from=row.effective_from, rate=_plain(row.rate), source=row.source)
        )
    eu, us = (
        RateTable(entries={code: tuple(rows) for code, rows in places[kind].items()})
        for kind in (TaxRateKind.EU_VAT, TaxRateKind.US_STATE)
    )
    return (eu if eu.entries else eu_rates(), us if us.entries else us_rates())


def _plain(rate: Decimal) -> Decimal:
    # The column keeps 3 decimals (20.000); the files and the printed labels say 20 and 25.5,
    # and a frozen decision stores the rate as text: the same rate, written the same way.
    return rate.quantize(Decimal(1)) if rate == rate.to_integral() else rate.normalize()


def ecb_rate_on(*, currency: str, on: date) -> EcbRate | None:
    """The latest ECB euro reference rate of `currency` published on or before `on`, if any
    (Article 230: the latest rate published at the chargeable event)."""
    row = (
        ExchangeRate.objects.filter(currency=currency, published_on__lte=on)
        .order_by("-published_on")
        .first()
    )
    if row is None:
        return None
    return EcbRate(
        currency=row.currency,
        units_per_eur=row.units_per_eur.normalize(),
        published_on=row.published_on,
    )

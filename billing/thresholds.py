"""Usage threshold emails: 50 %, 80 % and 100 % of each monthly allowance, once per period each.

Each run emails the highest threshold reached and not told yet, and marks the lower ones told
with it: usage that jumps from 40 % to 110 % between two runs gets the 100 % email alone."""

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Min, Q, Sum
from django.template.loader import render_to_string

from metering.models import ChargeStatus, UsageDay
from outbox import services as outbox
from plans import pricing
from plans.meters import meter_label
from plans.models import Allowance, Subscription, SubscriptionAddOn
from plans.money import format_money, format_unit_price
from plans.terms import TermsBook, meter_terms_by_meter

from .models import ThresholdNotice

THRESHOLDS = (50, 80, 100)


def usage_thresholds_notify(*, as_of: datetime) -> int:
    """Email the billing contact when a meter reaches 50 %, 80 % or 100 % of what the plan or
    add-on includes this period. A notice row per (account, period, meter, threshold) makes it
    once.

    Only accounts whose usage could still cross a threshold are looked at closely: usage at or
    above half the smallest allowance of its meter, and not told at 100 % yet. After a close
    every account starts a period with no usage, so a run then reads two light queries."""
    live = Subscription.objects.filter(ended_at__isnull=True, plan__isnull=False)
    units = _units_this_period(live.values_list("account_id", "usage_period_start"))
    if not units:
        return 0
    # Of the allowances a meter may have (catalog or negotiated), the smallest: usage below
    # half of it reaches no threshold whatever the account's own terms are.
    smallest = dict(
        Allowance.objects.filter(included__gt=0)
        .values("meter")
        .annotate(n=Min("included"))
        .values_list("meter", "n")
    )
    units = _kept(
        units,
        lambda key, meter, used: meter in smallest
        and used * 100 >= THRESHOLDS[0] * smallest[meter],
    )
    if not units:
        return 0
    sent = {
        (account_id, start, meter, threshold)
        for account_id, start, meter, threshold in ThresholdNotice.objects.filter(
            account_id__any=list({account_id for account_id, _ in units}),
            period_start__in={start for _, start in units},
        ).values_list("account_id", "period_start", "meter", "threshold")
        if (account_id, start) in units
    }
    # A meter told at 100 % has nothing more to tell this period.
    units = _kept(units, lambda key, meter, used: (*key, meter, THRESHOLDS[-1]) not in sent)
    subscriptions = [
        s
        for s in live.filter(account_id__any=list({account_id for account_id, _ in units}))
        .select_related("account", "plan")
        .order_by("pk")
        if (s.account_id, s.usage_period_start) in units
    ]
    if not subscriptions:
        return 0
    book = TermsBook(s.account_id for s in subscriptions)
    addons = defaultdict(list)
    for item in SubscriptionAddOn.objects.filter(
        subscription_id__any=[s.pk for s in subscriptions]
    ).select_related("addon", "tier"):
        addons[item.subscription_id].append((item.addon, item.tier))
    count = 0
    for subscription in subscriptions:
        used_by_meter = units[(subscription.account_id, subscription.usage_period_start)]
        terms = meter_terms_by_meter(book.subscription_terms(subscription, addons[subscription.pk]))
        for meter, meter_terms in terms.items():
            used = used_by_meter.get(meter, 0)
            reached = [
                t
                for t in THRESHOLDS
                if meter_terms.included and used * 100 >= t * meter_terms.included
            ]
            if not reached:
                continue
            threshold = reached[-1]  # one email at the highest threshold reached
            key = (subscription.account_id, subscription.usage_period_start, meter, threshold)
            if key in sent:
                continue
            count += _notify(subscription, meter, meter_terms, used, threshold, as_of)
    return count


Units = dict[tuple[int, datetime], dict[str, int]]  # (account, period start) → meter → units


def _kept(units: Units, keep: Callable[[tuple[int, datetime], str, int], bool]) -> Units:
    """The meters for which `keep` holds, and the accounts left with any."""
    kept = {
        key: {meter: used for meter, used in by_meter.items() if keep(key, meter, used)}
        for key, by_meter in units.items()
    }
    return {key: by_meter for key, by_meter in kept.items() if by_meter}


def _units_this_period(pairs: Iterable[tuple[int, datetime]]) -> Units:
    """Final units per meter of each (account, usage period start), from the per-day counters
    (metering.UsageDay, exact: a key's units are the sum of its rows), O(days) rows instead of
    a count of every unit. Accounts without usage in the period are left out."""
    by_start: dict[datetime, set[int]] = defaultdict(set)
    for account_id, start in pairs:
        by_start[start].add(account_id)
    if not by_start:
        return {}
    condition = Q()
    for start, accounts in by_start.items():
        condition |= Q(period_start=start, account_id__any=list(accounts))
    rows = (
        UsageDay.objects.filter(condition, status=ChargeStatus.FINAL)
        .values_list("account_id", "period_start", "meter")
        .annotate(n=Sum("units"))
    )
    result: dict[tuple[int, datetime], dict[str, int]] = defaultdict(dict)
    for account_id, start, meter, n in rows:
        if n:
            result[(account_id, start)][meter] = n
    return dict(result)


def _notify(
    subscription, meter, meter_terms: pricing.MeterTerms, used: int, threshold: int, as_of
) -> int:
    account = subscription.account
    try:
        with transaction.atomic():
            ThresholdNotice.objects.create(
                account=account,
                period_start=subscription.usage_period_start,
                meter=meter,
                threshold=threshold,
                sent_at=as_of,
            )
            # The lower thresholds are implied once a higher one is sent: never email them after.
            for lower in (t for t in THRESHOLDS if t < threshold):
                ThresholdNotice.objects.get_or_create(
                    account=account,
                    period_start=subscription.usage_period_start,
                    meter=meter,
                    threshold=lower,
                    defaults={"sent_at": as_of},
                )
            outbox.threshold_reached_emit(
                account_id=account.pk,
                meter=meter,
                used=used,
                included=meter_terms.included,
                threshold=threshold,
            )
    except IntegrityError:
        return 0  # another run sent it
    context = {
        "account": account,
        "meter": meter_label(meter),
        "used": used,
        "included": meter_terms.included,
        "threshold": threshold,
        "period_start": subscription.usage_period_start,
        "period_end": subscription.usage_period_end,
        "hard_cap": meter_terms.policy == "hard_cap",
        "overage": _overage_words(meter_terms, account.currency),
        "site_url": settings.SITE_URL,
    }
    subject = f"You have used {threshold}% of your {context['meter']} this period"
    transaction.on_commit(
        lambda: send_mail(
            subject,
            render_to_string("emails/usage_threshold.txt", context),
            None,
            [account.billing_email],
            html_message=render_to_string("emails/usage_threshold.html", context),
        )
    )
    return 1


def _overage_words(terms: pricing.MeterTerms, currency: str) -> str:
    # MeterTerms refuses a per_block without its block price, a per_unit without its price.
    if terms.policy == "per_block":
        assert terms.block_price_minor is not None
        return f"{format_money(terms.block_price_minor, currency)} per block of {terms.block_size}"
    if terms.policy == "per_unit":
        assert terms.unit_price_minor is not None
        return f"{format_unit_price(terms.unit_price_minor, currency)} each"
    return ""

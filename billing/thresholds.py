"""Usage threshold emails: 50 %, 80 % and 100 % of each monthly allowance, once per period each.

Each run emails the highest threshold reached and not told yet, and marks the lower ones told
with it: usage that jumps from 40 % to 110 % between two runs gets the 100 % email alone."""

from collections import defaultdict
from datetime import datetime

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string

from outbox import services as outbox
from plans import pricing
from plans.meters import meter_label
from plans.models import Subscription, SubscriptionAddOn
from plans.money import format_money, format_unit_price
from plans.terms import TermsBook, meter_terms_by_meter

from .closing import units_by_period
from .models import ThresholdNotice

THRESHOLDS = (50, 80, 100)


def usage_thresholds_notify(*, as_of: datetime) -> int:
    """Email the billing contact when a meter reaches 50 %, 80 % or 100 % of what the plan or
    add-on includes this period. A notice row per (account, period, meter, threshold) makes it
    once."""
    subscriptions = list(
        Subscription.objects.filter(ended_at__isnull=True, plan__isnull=False).select_related(
            "account", "plan"
        )
    )
    if not subscriptions:
        return 0
    book = TermsBook(s.account_id for s in subscriptions)
    addons = defaultdict(list)
    for item in SubscriptionAddOn.objects.filter(subscription__in=subscriptions).select_related(
        "addon", "tier"
    ):
        addons[item.subscription_id].append((item.addon, item.tier))
    units = units_by_period((s.account_id, s.usage_period_start) for s in subscriptions)
    sent = set(
        ThresholdNotice.objects.filter(
            account_id__in=[s.account_id for s in subscriptions]
        ).values_list("account_id", "period_start", "meter", "threshold")
    )
    count = 0
    for subscription in subscriptions:
        used_by_meter = units.get((subscription.account_id, subscription.usage_period_start), {})
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

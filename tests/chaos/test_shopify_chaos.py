"""Chaos case for the Shopify channel: the stand-in fails (500), loses answers (it records the
usage, then drops the connection) and times out on appUsageRecordCreate while collectors run
concurrently; then the sweep settles what was lost and the merchants approve higher caps. Every
usage record must reach Shopify exactly once, nothing over a cap, nothing dropped."""

import os
import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from billing import payments, run, shopify_billing, shopify_usage
from billing.models import Invoice, ShopifyUsageRecord
from tests.billing.test_money_safety import in_threads
from tests.shopify.test_usage_records import (
    app_subscription,
    shopify_account,
    usage_statement,
)

from .conftest import repetitions

UNSETTLED = ("created", "sending", "unknown")


def sweep_until_settled(*, rounds: int = 40) -> int:
    """The sweep every 6 minutes (past the in-flight timeout, by the wall clock that judges
    it) until no record waits for an answer and nothing is collectable; how many it took."""
    as_of = datetime.now(UTC)
    for n in range(1, rounds + 1):
        as_of += shopify_usage.IN_FLIGHT_TIMEOUT + timedelta(minutes=1)
        with time_machine.travel(as_of, tick=False):
            run.collect_due(as_of=as_of)
        waiting = ShopifyUsageRecord.objects.filter(status__in=UNSETTLED).exists()
        if not waiting and not payments.collectable_invoice_ids():
            return n
    raise AssertionError(f"still unsettled after {rounds} sweeps")


@pytest.mark.django_db(transaction=True)
def test_shopify_failing_losing_answers_and_timing_out_posts_each_usage_record_once_within_caps(
    make_account, shopify_standin, settings, chaos_report
):
    count = repetitions("shopify_usage", fast=4, full=40)
    rng = random.Random(int(os.environ.get("CHAOS_SEED", "24")))
    settings.SHOPIFY_TIMEOUT_SECONDS = 1
    accounts = [shopify_account(shopify_standin, f"chaos{n}") for n in range(count)]
    # $100–$700 of overage and $1–$200 of late usage against a $500.00 cap: some fit, some
    # are split, some are held whole; the first account surely has a split and a whole hold.
    amounts = [(650, 120)] + [(rng.randint(100, 700), rng.randint(1, 200)) for _ in accounts]
    invoices = [
        usage_statement(account, ("overage", overage, 100), ("late_usage", late, 100))
        for account, (overage, late) in zip(accounts, amounts, strict=False)
    ]
    faults = ["error", "lose_answer", "timeout"] * count
    rng.shuffle(faults)
    for mode in faults:
        # One at a time, in a random order: the stand-in fires them first come, first served.
        seconds = 1.5 if mode == "timeout" else None
        shopify_standin.fault(mode, operation="appUsageRecordCreate", seconds=seconds)
    ids = [invoice.pk for invoice in invoices]

    def collector(i):
        order = list(ids)
        random.Random(i).shuffle(order)
        for invoice_id in order:
            payments.invoice_collect(invoice_id=invoice_id)

    results = in_threads(4, collector)
    assert not [r for r in results if isinstance(r, Exception)], results
    sweeps = sweep_until_settled()

    # The merchants approve the higher caps they were asked for, until nothing is held.
    raises = 0
    for _ in range(3):
        held = [a for a in accounts if shopify_usage.held_minor(a)]
        for account in held:
            row = app_subscription(account)
            url = row.cap_confirmation_url or shopify_usage.cap_raise_request(account=account)
            shopify_standin.approve(url)
            shopify_billing.shopify_refresh(shopify_subscription=row)  # → held_post
            raises += 1
        sweeps += sweep_until_settled()
    state = shopify_standin.state()

    # Each key once at Shopify, and exactly our posted records, at our amounts.
    keys = Counter(r["idempotency_key"] for r in state["usage_records"])
    assert set(keys.values()) == {1}, keys
    ours = {r.idempotency_key: r for r in ShopifyUsageRecord.objects.all()}
    assert {r.status for r in ours.values()} == {"posted"}
    assert set(keys) == set(ours)
    for record in state["usage_records"]:
        assert Decimal(record["price"]) * 100 == ours[record["idempotency_key"]].amount_minor
    # Nothing dropped: each usage line's parts add up to the line.
    for invoice in invoices:
        for line in invoice.lines.filter(kind__in=shopify_usage.POSTABLE_KINDS):
            assert sum(r.amount_minor for r in line.usage_records.all()) == line.amount_minor
    # Shopify's balance is what we posted, and never over the cap it had approved.
    posted_by_subscription: dict[str, int] = defaultdict(int)
    for record in ours.values():
        posted_by_subscription[record.shopify_subscription.gid] += record.amount_minor
    for sub in state["subscriptions"]:
        [usage] = [line for line in sub["lines"] if line["kind"] == "usage"]
        used = int(Decimal(usage["balance_used"]) * 100)
        assert used == posted_by_subscription[sub["id"]], sub
        assert used <= int(Decimal(usage["capped_amount"]) * 100), sub
    assert set(Invoice.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"paid"}
    split = sum(1 for r in ours.values() if r.part > 1)
    chaos_report(
        "Shopify failing, losing answers and timing out",
        invoices=count,
        usage_records=len(ours),
        parts_split_at_the_cap=split,
        faults_fired=state["faults_fired"],
        cap_raises=raises,
        posted_once=sum(1 for c in keys.values() if c == 1),
        over_cap=0,
        sweeps=sweeps,
    )

"""Properties of the rating rules over generated terms and usage (hypothesis)."""

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from plans.money import round_minor
from plans.pricing import (
    AddOnTerms,
    EditionTerms,
    LateUsage,
    MeterTerms,
    Period,
    PlanTerms,
    SubscriptionTerms,
    UsageMonth,
    classify_change,
    invoice_total,
    late_usage_line,
    overage_amount_minor,
    overage_quantity,
    price_period_close,
    proration_minor,
    resolution_overage_line,
    resolution_terms,
)

PROPERTIES = settings(max_examples=200, deadline=None, database=None)

YEAR = Period(start=datetime(2026, 1, 1, tzinfo=UTC), end=datetime(2027, 1, 1, tzinfo=UTC))
NEXT_YEAR = Period(start=YEAR.end, end=datetime(2028, 1, 1, tzinfo=UTC))
JANUARY_2027 = Period(start=YEAR.end, end=datetime(2027, 2, 1, tzinfo=UTC))
MONTHS = [
    Period(
        start=datetime(2026, n, 1, tzinfo=UTC),
        end=datetime(2026, n + 1, 1, tzinfo=UTC) if n < 12 else YEAR.end,
    )
    for n in range(1, 13)
]
ADDON_METERS = {
    "automate": "automated_interactions",
    "voice": "voice_tickets",
    "sms": "sms_tickets",
    "convert": "convert_clicks",
}
ALL_METERS = ["helpdesk_tickets", *ADDON_METERS.values(), "automated_resolutions"]

unit_prices = st.decimals(min_value=0, max_value=10_000, places=3)
counts = st.integers(min_value=0, max_value=50_000)


@st.composite
def meter_terms(draw, meter: str) -> MeterTerms:
    policy = draw(st.sampled_from(["per_unit", "per_block", "hard_cap", "none"]))
    included = draw(st.integers(min_value=0, max_value=5_000))
    if policy == "per_unit":
        return MeterTerms(
            meter=meter, included=included, policy=policy, unit_price_minor=draw(unit_prices)
        )
    if policy == "per_block":
        return MeterTerms(
            meter=meter,
            included=included,
            policy=policy,
            block_size=draw(st.integers(min_value=1, max_value=500)),
            block_price_minor=draw(st.integers(min_value=0, max_value=10_000)),
        )
    return MeterTerms(meter=meter, included=included, policy=policy)


@st.composite
def subscriptions(draw, interval=None, with_edition=None) -> SubscriptionTerms:
    interval = interval or draw(st.sampled_from(["month", "year"]))
    fees = st.integers(min_value=0, max_value=1_000_000)
    plan = PlanTerms(
        code="plan",
        name="Plan",
        rank=draw(st.integers(min_value=1, max_value=5)),
        interval=interval,
        currency="USD",
        fee_minor=draw(fees),
        helpdesk=draw(meter_terms("helpdesk_tickets")),
    )
    chosen = draw(st.lists(st.sampled_from(sorted(ADDON_METERS)), unique=True))
    addons = tuple(
        AddOnTerms(
            addon=code,
            tier=f"{code}-{rank}",
            tier_rank=rank,
            name=code,
            fee_minor=draw(fees),
            usage=draw(meter_terms(ADDON_METERS[code])),
        )
        for code in chosen
        for rank in [draw(st.integers(min_value=1, max_value=3))]
    )
    edition = None
    if draw(st.booleans()) if with_edition is None else with_edition:
        commitment_price = draw(st.decimals(min_value=0, max_value=500, places=2))
        edition = EditionTerms(
            code="edition",
            name="Edition",
            rank=draw(st.integers(min_value=1, max_value=3)),
            interval=interval,
            currency="USD",
            fee_per_agent_minor=draw(st.integers(min_value=0, max_value=20_000)),
            resolutions_per_agent_month=draw(st.integers(min_value=0, max_value=20)),
            full_agents=draw(st.integers(min_value=0, max_value=200)),
            light_agents=draw(st.integers(min_value=0, max_value=50)),
            commitment_units=draw(st.sampled_from([0, 100, 250, 1_000])),
            commitment_unit_minor=commitment_price,
            overage_unit_minor=commitment_price
            + draw(st.decimals(min_value="0.01", max_value=500, places=2)),
            at_limit=draw(st.sampled_from(["keep", "pause"])),
        )
    return SubscriptionTerms(plan=plan, addons=addons, edition=edition)


usages = st.fixed_dictionaries({meter: counts for meter in ALL_METERS})


def _close(terms: SubscriptionTerms, usage: dict[str, int], earlier_usage: int, monthly: list[int]):
    """Price the close of a cycle: December of an annual one, or a monthly cycle."""
    annual = terms.interval == "year"
    closed = MONTHS[-1]
    earlier = []
    if annual:
        earlier = [
            UsageMonth(period=MONTHS[index], used=used, terms=addon.usage)
            for addon in terms.addons
            if addon.meter in ("voice_tickets", "sms_tickets")
            for index, used in enumerate(monthly)
        ]
    return price_period_close(
        terms=terms,
        closed=closed,
        cycle=YEAR if annual else closed,
        usage=usage,
        resolutions_used_earlier=earlier_usage,
        earlier_months=earlier,
        next_cycle=NEXT_YEAR if annual else JANUARY_2027,
    )


monthly_counts = st.lists(counts, min_size=11, max_size=11)


@PROPERTIES
@given(terms=subscriptions(), usage=usages, earlier=counts, monthly=monthly_counts)
def test_P1_P2_P3_P4_Z9_charges_are_never_negative(terms, usage, earlier, monthly):
    lines = _close(terms, usage, earlier, monthly)
    assert all(line.amount_minor >= 0 for line in lines if line.kind != "credit")
    assert all(line.kind != "credit" for line in lines)  # a period close credits nothing
    assert invoice_total(lines) >= 0


@PROPERTIES
@given(
    terms=subscriptions(),
    usage=usages,
    more=usages,
    earlier=counts,
    monthly=monthly_counts,
    monthly_more=monthly_counts,
)
def test_P2_P3_P4_Z9_more_usage_never_costs_less(
    terms, usage, more, earlier, monthly, monthly_more
):
    bigger = {meter: usage[meter] + more[meter] for meter in usage}
    bigger_monthly = [a + b for a, b in zip(monthly, monthly_more, strict=True)]
    before = invoice_total(_close(terms, usage, earlier, monthly))
    after = invoice_total(_close(terms, bigger, earlier, bigger_monthly))
    assert after >= before


@PROPERTIES
@given(terms=subscriptions(), usage=usages, earlier=counts, monthly=monthly_counts)
def test_P9_pricing_twice_gives_identical_lines(terms, usage, earlier, monthly):
    first = _close(terms, usage, earlier, monthly)
    second = _close(terms, dict(usage), earlier, list(monthly))
    assert first == second
    # The order in which add-ons are listed changes the order of lines, never the lines.
    shuffled = SubscriptionTerms(
        plan=terms.plan, addons=tuple(reversed(terms.addons)), edition=terms.edition
    )
    assert Counter(_close(shuffled, usage, earlier, monthly)) == Counter(first)


@PROPERTIES
@given(terms=meter_terms("helpdesk_tickets"), used=counts, extra=counts)
def test_P2_P3_overage_is_monotonic_per_meter(terms, used, extra):
    assert overage_quantity(terms=terms, used=used + extra) >= overage_quantity(
        terms=terms, used=used
    )
    assert overage_amount_minor(terms=terms, used=used + extra) >= overage_amount_minor(
        terms=terms, used=used
    )


@PROPERTIES
@given(
    terms=meter_terms("helpdesk_tickets"),
    arrivals=st.lists(st.integers(min_value=0, max_value=5_000), min_size=1, max_size=6),
)
def test_F6_late_arrivals_add_up_to_the_on_time_quantity(terms, arrivals):
    # The counts as they stood at each invoice: what was on time, then each late batch.
    running = [sum(arrivals[: index + 1]) for index in range(len(arrivals))]
    late_lines = [
        late_usage_line(late=LateUsage(period=MONTHS[0], terms=terms, billed_units=a, units=b))
        for a, b in zip(running, running[1:], strict=False)
    ]
    late_lines = [line for line in late_lines if line is not None]
    billed_then = overage_quantity(terms=terms, used=running[0])
    assert billed_then + sum(line.quantity for line in late_lines) == overage_quantity(
        terms=terms, used=running[-1]
    )
    split = overage_amount_minor(terms=terms, used=running[0]) + invoice_total(late_lines)
    on_time = overage_amount_minor(terms=terms, used=running[-1])
    price = terms.overage_unit_price
    if price is None or price == price.to_integral_value():
        assert split == on_time
    else:
        # P9 rounds each line once: a late line can move the period's total by under a cent.
        assert abs(split - on_time) <= len(late_lines)


@PROPERTIES
@given(terms=subscriptions(with_edition=True), months=st.lists(counts, min_size=1, max_size=12))
def test_Z9_monthly_overage_adds_up_to_the_terms_total(terms, months):
    edition = terms.edition
    billed, earlier = 0, 0
    for used in months:
        line = resolution_overage_line(
            edition=edition, used_this_month=used, used_earlier=earlier, period=MONTHS[0]
        )
        billed += line.quantity if line else 0
        earlier += used
    assert billed == overage_quantity(terms=resolution_terms(edition=edition), used=earlier)


@PROPERTIES
@given(
    amount=st.integers(min_value=0, max_value=10_000_000),
    first=st.integers(min_value=0, max_value=YEAR.seconds - 1),
    second=st.integers(min_value=0, max_value=YEAR.seconds - 1),
)
def test_P6_proration_is_bounded_and_shrinks_with_time(amount, first, second):
    early, late = sorted((first, second))
    early_at = YEAR.start + timedelta(seconds=early)
    late_at = YEAR.start + timedelta(seconds=late)
    early_charge = proration_minor(amount_minor=amount, period=YEAR, at=early_at)
    late_charge = proration_minor(amount_minor=amount, period=YEAR, at=late_at)
    assert 0 <= late_charge <= early_charge <= amount
    assert proration_minor(amount_minor=-amount, period=YEAR, at=early_at) == -early_charge


@PROPERTIES
@given(value=st.decimals(min_value=-(10**12), max_value=10**12, places=4))
def test_P9_round_minor_is_decimal_round_half_up(value):
    assert round_minor(value) == int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@PROPERTIES
@given(current=subscriptions("month"), requested=subscriptions("month"))
def test_P7_an_upgrade_reversed_is_a_downgrade(current, requested):
    assert classify_change(current=current, requested=current) == "none"
    if classify_change(current=current, requested=requested) == "upgrade":
        assert classify_change(current=requested, requested=current) == "downgrade"

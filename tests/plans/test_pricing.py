"""The rating rules (plans.pricing), table-driven with exact cents from catalog.md.

Pure: no database, no clock. Each test is named after the rule id it pins down.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from plans.pricing import (
    AddOnTerms,
    EditionTerms,
    LateUsage,
    Line,
    MeterTerms,
    Period,
    PlanTerms,
    PricingError,
    SubscriptionTerms,
    UsageMonth,
    annual_fee_minor,
    classify_change,
    commitment_line,
    deferred_usage_lines,
    extra_units,
    fee_lines,
    integrations_within_plan,
    interval_fee_minor,
    invoice_total,
    is_migrated_period,
    late_usage_line,
    overage_amount_minor,
    overage_quantity,
    price_period_close,
    proration_minor,
    resolution_allocation,
    resolution_limit,
    resolution_overage_line,
    resolution_terms,
    upgrade_lines,
    usage_lines,
    within_spending_cap,
)

# --- the default catalog (catalog.md), in USD minor units -----------------------------------

_PLANS = {  # code: (rank, monthly fee, helpdesk terms)
    "starter": (
        1,
        1_000,
        MeterTerms(
            meter="helpdesk_tickets",
            included=50,
            policy="per_unit",
            unit_price_minor=Decimal("40"),
        ),
    ),
    "basic": (
        2,
        6_000,
        MeterTerms(
            meter="helpdesk_tickets",
            included=300,
            policy="per_block",
            block_size=100,
            block_price_minor=4_000,
        ),
    ),
    "pro": (
        3,
        36_000,
        MeterTerms(
            meter="helpdesk_tickets",
            included=2_000,
            policy="per_block",
            block_size=100,
            block_price_minor=3_600,
        ),
    ),
    "advanced": (
        4,
        90_000,
        MeterTerms(
            meter="helpdesk_tickets",
            included=5_000,
            policy="per_block",
            block_size=100,
            block_price_minor=3_600,
        ),
    ),
}
_ADDONS = {  # code: (meter, [(monthly fee, included) per tier], price beyond the tier)
    "automate": ("automated_interactions", [(3_000, 30), (9_000, 100), (25_000, 300)], 100),
    "voice": ("voice_tickets", [(3_000, 20), (9_000, 75), (25_000, 250)], 150),
    "sms": ("sms_tickets", [(2_000, 20), (6_000, 75), (17_500, 250)], 100),
    "convert": ("convert_clicks", [(3_000, 50), (10_000, 200), (30_000, 750)], None),
}
_EDITIONS = {  # code: (rank, fee per full agent per month, resolutions per full agent per month)
    "team": (1, 5_500, 5),
    "professional": (2, 11_500, 10),
    "enterprise_suite": (3, 16_900, 15),
}


def plan(code: str, interval: str = "month") -> PlanTerms:
    rank, monthly, helpdesk = _PLANS[code]
    return PlanTerms(
        code=code,
        name=code.capitalize(),
        rank=rank,
        interval=interval,
        currency="USD",
        fee_minor=interval_fee_minor(monthly_fee_minor=monthly, interval=interval),
        helpdesk=helpdesk,
    )


def addon(code: str, tier: int, interval: str = "month") -> AddOnTerms:
    meter, tiers, price = _ADDONS[code]
    monthly, included = tiers[tier - 1]
    if price is None:
        usage = MeterTerms(meter=meter, included=included, policy="hard_cap")
    else:
        usage = MeterTerms(
            meter=meter, included=included, policy="per_unit", unit_price_minor=Decimal(price)
        )
    return AddOnTerms(
        addon=code,
        tier=f"{code}-{included}",
        tier_rank=tier,
        name=f"{code.capitalize()} {included}",
        fee_minor=interval_fee_minor(monthly_fee_minor=monthly, interval=interval),
        usage=usage,
    )


def edition(code: str, full: int, light: int = 0, interval: str = "year", **extra) -> EditionTerms:
    rank, fee, per_agent = _EDITIONS[code]
    prices = {"commitment_unit_minor": Decimal("150"), "overage_unit_minor": Decimal("200")}
    return EditionTerms(
        code=code,
        name=code.replace("_", " ").title(),
        rank=rank,
        interval=interval,
        currency="USD",
        fee_per_agent_minor=fee,
        resolutions_per_agent_month=per_agent,
        full_agents=full,
        light_agents=light,
        **{**prices, **extra},
    )


def sub(plan_terms=None, *addons, edition_terms=None) -> SubscriptionTerms:
    return SubscriptionTerms(plan=plan_terms, addons=addons, edition=edition_terms)


def at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def month(year: int, number: int) -> Period:
    end = at(year + 1, 1, 1) if number == 12 else at(year, number + 1, 1)
    return Period(start=at(year, number, 1), end=end)


OCT, NOV, DEC = month(2026, 10), month(2026, 11), month(2026, 12)  # NOV lasts 30 days
YEAR_2026 = Period(start=at(2026, 1, 1), end=at(2027, 1, 1))
YEAR_2027 = Period(start=at(2027, 1, 1), end=at(2028, 1, 1))


def amounts(lines) -> list[tuple[str, str | None, int]]:
    return [(line.kind, line.meter, line.amount_minor) for line in lines]


# --- P1: fees in advance --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("monthly", "annual"),
    [(1_000, 10_000), (6_000, 60_000), (36_000, 360_000), (90_000, 900_000), (0, 0)],
)
def test_P1_annual_fee_is_ten_monthly_fees(monthly, annual):
    assert annual_fee_minor(monthly_fee_minor=monthly) == annual
    assert interval_fee_minor(monthly_fee_minor=monthly, interval="year") == annual
    assert interval_fee_minor(monthly_fee_minor=monthly, interval="month") == monthly


def test_P1_first_invoice_carries_the_first_period_fees():
    lines = fee_lines(terms=sub(plan("basic"), addon("voice", 1)), period=OCT)
    assert amounts(lines) == [("plan_fee", None, 6_000), ("addon_fee", "voice_tickets", 3_000)]
    assert all(line.rules[0] == "P1" for line in lines)
    assert all((line.period_start, line.period_end) == (OCT.start, OCT.end) for line in lines)


def test_P1_basic_annual_fee_is_billed_once_for_the_year():
    lines = fee_lines(terms=sub(plan("basic", "year"), addon("voice", 1, "year")), period=YEAR_2026)
    assert amounts(lines) == [("plan_fee", None, 60_000), ("addon_fee", "voice_tickets", 30_000)]
    assert lines[0].description == "Basic plan, annual fee"
    assert (lines[0].period_start, lines[0].period_end) == (YEAR_2026.start, YEAR_2026.end)


@pytest.mark.parametrize(
    ("period_start", "created_at", "migrated"),
    [
        (at(2026, 10, 1), at(2026, 10, 17, 9), True),  # a partner moves a customer mid-cycle
        (at(2026, 10, 17, 9), at(2026, 10, 17, 9), False),  # a new subscription starts now
        (at(2026, 10, 17, 9), at(2026, 10, 17, 9, 0, 1), True),
    ],
)
def test_P1_migrated_period_is_not_billed_its_fees_again(period_start, created_at, migrated):
    assert is_migrated_period(period_start=period_start, created_at=created_at) is migrated
    lines = fee_lines(terms=sub(plan("basic")), period=OCT, is_migrated=migrated)
    assert invoice_total(lines) == (0 if migrated else 6_000)


def test_P1_migrated_customer_pays_the_next_period_fees_at_the_close():
    lines = price_period_close(
        terms=sub(plan("basic")),
        closed=OCT,
        cycle=OCT,
        usage={"helpdesk_tickets": 100},
        next_cycle=NOV,
    )
    assert amounts(lines) == [("plan_fee", None, 6_000)]
    assert lines[0].period_start == NOV.start


def test_P1_monthly_close_carries_closed_usage_and_next_fees():
    lines = price_period_close(
        terms=sub(plan("basic"), addon("automate", 1)),
        closed=OCT,
        cycle=OCT,
        usage={"helpdesk_tickets": 401, "automated_interactions": 35},
        next_cycle=NOV,
    )
    assert amounts(lines) == [
        ("overage", "helpdesk_tickets", 8_000),
        ("overage", "automated_interactions", 500),
        ("plan_fee", None, 6_000),
        ("addon_fee", "automated_interactions", 3_000),
    ]
    assert [line.period_start for line in lines] == [OCT.start, OCT.start, NOV.start, NOV.start]
    assert invoice_total(lines) == 17_500


def test_P1_annual_subscription_monthly_closes_carry_no_fee_lines():
    terms = sub(plan("basic", "year"), addon("voice", 1, "year"))
    lines = price_period_close(
        terms=terms,
        closed=OCT,
        cycle=YEAR_2026,
        usage={"helpdesk_tickets": 500, "voice_tickets": 30},
    )
    assert amounts(lines) == [("overage", "helpdesk_tickets", 8_000)]
    with pytest.raises(PricingError):  # fees only come when the cycle closes
        price_period_close(terms=terms, closed=OCT, cycle=YEAR_2026, usage={}, next_cycle=NOV)


def test_P1_annual_renewal_bills_the_next_cycle_fees_with_the_scheduled_terms():
    current = sub(plan("pro", "year"))
    renewal = sub(plan("basic", "year"))  # a downgrade scheduled for the cycle end (P7)
    lines = price_period_close(
        terms=current,
        closed=DEC,
        cycle=YEAR_2026,
        usage={"helpdesk_tickets": 2_001},
        next_cycle=YEAR_2027,
        next_terms=renewal,
    )
    # December's usage is priced on Pro's terms, 2027 is billed at Basic's annual fee.
    assert amounts(lines) == [("overage", "helpdesk_tickets", 3_600), ("plan_fee", None, 60_000)]
    assert lines[1].period_start == YEAR_2027.start


@pytest.mark.parametrize(
    "bad",
    [
        {"closed": NOV, "cycle": OCT},  # closed month outside its cycle
        {"closed": OCT, "cycle": YEAR_2026},  # a monthly subscription's cycle is its month
        {"closed": OCT, "cycle": OCT, "next_cycle": DEC},  # next cycle must follow
        {"closed": OCT, "cycle": OCT, "next_terms": sub(plan("pro"))},  # terms without a cycle
        {"closed": OCT, "cycle": OCT, "usage": {"helpdesk_tickets": -1}},
    ],
)
def test_P1_period_close_refuses_inconsistent_periods(bad):
    arguments = {"terms": sub(plan("basic")), "usage": {}, **bad}
    with pytest.raises(PricingError):
        price_period_close(**arguments)


def test_P1_subscription_has_one_interval_and_one_currency():
    with pytest.raises(PricingError):
        sub(plan("basic"), edition_terms=edition("professional", 7, interval="year"))
    with pytest.raises(PricingError):
        sub(plan("basic"), addon("voice", 1), addon("voice", 2))
    with pytest.raises(PricingError):
        sub()


# --- P2: helpdesk overage in arrears --------------------------------------------------------


def _month_cost(code: str, tickets: int) -> int:
    terms = sub(plan(code))
    lines = fee_lines(terms=terms, period=OCT) + usage_lines(
        terms=terms, closed=OCT, usage={"helpdesk_tickets": tickets}
    )
    return invoice_total(lines)


def test_P2_seed_000_basic_with_500_tickets_costs_140_dollars():
    terms = sub(plan("basic"))
    (overage,) = usage_lines(terms=terms, closed=OCT, usage={"helpdesk_tickets": 500})
    assert (overage.quantity, overage.unit_price_minor, overage.amount_minor) == (2, 4_000, 8_000)
    assert overage.rules == ("P2",)
    assert overage.description == (
        "Basic plan, helpdesk tickets overage, October 2026: 200 over the 300 included,"
        " 2 blocks of 100"
    )
    assert _month_cost("basic", 500) == 14_000


@pytest.mark.parametrize(
    ("tickets", "cost"),
    [(0, 6_000), (300, 6_000), (301, 10_000), (400, 10_000), (401, 14_000), (500, 14_000)],
)
def test_P2_basic_bills_whole_blocks(tickets, cost):
    assert _month_cost("basic", tickets) == cost


@pytest.mark.parametrize(
    ("tickets", "cost"), [(0, 1_000), (50, 1_000), (51, 1_040), (75, 2_000), (1_050, 41_000)]
)
def test_P2_starter_bills_each_extra_ticket(tickets, cost):
    assert _month_cost("starter", tickets) == cost


@pytest.mark.parametrize(
    ("code", "tickets", "cost"),
    [
        ("pro", 2_000, 36_000),
        ("pro", 2_001, 39_600),
        ("pro", 2_250, 46_800),
        ("advanced", 5_000, 90_000),
        ("advanced", 5_101, 97_200),
    ],
)
def test_P2_pro_and_advanced_blocks(code, tickets, cost):
    assert _month_cost(code, tickets) == cost


@pytest.mark.parametrize(
    ("tickets", "extra", "quantity", "amount"),
    [(299, 0, 0, 0), (301, 1, 1, 4_000), (555, 255, 3, 12_000)],
)
def test_P2_extra_units_quantity_and_amount(tickets, extra, quantity, amount):
    terms = plan("basic").helpdesk
    assert extra_units(terms=terms, used=tickets) == extra
    assert overage_quantity(terms=terms, used=tickets) == quantity
    assert overage_amount_minor(terms=terms, used=tickets) == amount


# --- P3: add-on tiers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "tier", "used", "cost"),
    [
        ("automate", 1, 30, 3_000),
        ("automate", 1, 31, 3_100),
        ("automate", 2, 150, 14_000),
        ("voice", 1, 20, 3_000),
        ("voice", 2, 80, 9_750),
        ("voice", 3, 251, 25_150),
        ("sms", 1, 0, 2_000),
        ("sms", 3, 260, 18_500),
    ],
)
def test_P3_addon_tier_fee_allowance_and_overage(code, tier, used, cost):
    terms = sub(plan("basic"), addon(code, tier))
    meter = _ADDONS[code][0]
    lines = fee_lines(terms=terms, period=OCT)[1:] + usage_lines(
        terms=terms, closed=OCT, usage={meter: used}
    )
    assert invoice_total(lines) == cost
    assert all("P3" in line.rules for line in lines)


@pytest.mark.parametrize("clicks", [0, 49, 50, 51, 750, 10_000_000])
@pytest.mark.parametrize("tier", [1, 2, 3])
def test_P3_C2_convert_hard_cap_never_bills_overage(tier, clicks):
    terms = sub(plan("basic"), addon("convert", tier))
    assert usage_lines(terms=terms, closed=OCT, usage={"convert_clicks": clicks}) == ()
    assert overage_amount_minor(terms=addon("convert", tier).usage, used=clicks) == 0


def test_P3_policy_none_leaves_usage_beyond_the_allowance_free():
    terms = MeterTerms(meter="helpdesk_tickets", included=100, policy="none")
    assert extra_units(terms=terms, used=150) == 50
    assert overage_amount_minor(terms=terms, used=150) == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"policy": "per_unit"},  # no price
        {"policy": "per_unit", "unit_price_minor": 0.4},  # a float
        {"policy": "per_unit", "unit_price_minor": Decimal("-1")},
        {"policy": "per_unit", "unit_price_minor": Decimal("NaN")},
        {"policy": "per_block", "block_size": 100},  # no block price
        {"policy": "per_block", "block_size": 0, "block_price_minor": 4_000},
        {"policy": "per_block", "block_size": 100, "block_price_minor": Decimal("40.5")},
        {"policy": "hard_cap", "unit_price_minor": Decimal("1")},
        {"policy": "flat"},
    ],
)
def test_P3_meter_terms_refuse_inconsistent_prices(bad):
    with pytest.raises(PricingError):
        MeterTerms(meter="voice_tickets", included=20, **bad)


def test_P3_catalog_decimal_columns_are_accepted_when_whole():
    terms = MeterTerms(
        meter="helpdesk_tickets",
        included=300,
        policy="per_block",
        block_size=100,
        block_price_minor=Decimal("4000.0000"),
    )
    assert terms.block_price_minor == 4_000 and type(terms.block_price_minor) is int
    priced = PlanTerms(
        code="basic",
        name="Basic",
        rank=2,
        interval="month",
        currency="USD",
        fee_minor=Decimal("6000.0000"),
        helpdesk=terms,
    )
    assert type(priced.fee_minor) is int
    assert MeterTerms(
        meter="voice_tickets", included=20, policy="per_unit", unit_price_minor=150
    ).unit_price_minor == Decimal("150")


# --- P4: annual subscriptions: Voice and SMS at the end of the cycle ------------------------

_VOICE = {1: 25, 2: 10, 3: 20, 4: 21, 12: 30}  # +5, 0, 0, +1, ..., +10 over 20 a month
_SMS = {1: 40, 12: 22}  # +20, ..., +2 over 20 a month


def _annual_terms():
    return sub(
        plan("basic", "year"),
        addon("automate", 1, "year"),
        addon("voice", 1, "year"),
        addon("sms", 1, "year"),
    )


def _earlier_months(terms):
    by_meter = {a.meter: a.usage for a in terms.addons}
    return [
        UsageMonth(period=month(2026, number), used=counts.get(number, 0), terms=by_meter[meter])
        for meter, counts in (("voice_tickets", _VOICE), ("sms_tickets", _SMS))
        for number in range(1, 12)
    ]


def test_P4_annual_voice_and_sms_wait_for_the_cycle_end():
    lines = price_period_close(
        terms=_annual_terms(),
        closed=month(2026, 4),
        cycle=YEAR_2026,
        usage={"helpdesk_tickets": 301, "automated_interactions": 40, "voice_tickets": 21},
    )
    # Helpdesk and Automate overage stay monthly; Voice and SMS usage is not billed yet.
    assert amounts(lines) == [
        ("overage", "helpdesk_tickets", 4_000),
        ("overage", "automated_interactions", 1_000),
    ]
    assert all("P4" in line.rules for line in lines)


def test_P4_cycle_end_sums_each_months_overage_one_line_per_addon():
    terms = _annual_terms()
    lines = price_period_close(
        terms=terms,
        closed=DEC,
        cycle=YEAR_2026,
        usage={"voice_tickets": _VOICE[12], "sms_tickets": _SMS[12]},
        earlier_months=_earlier_months(terms),
        next_cycle=YEAR_2027,
    )
    assert amounts(lines) == [
        ("overage", "sms_tickets", 2_200),  # (20 + 2) x 1.00 $
        ("overage", "voice_tickets", 2_400),  # (5 + 1 + 10) x 1.50 $; February's 10 unused
        ("plan_fee", None, 60_000),
        ("addon_fee", "automated_interactions", 30_000),
        ("addon_fee", "voice_tickets", 30_000),
        ("addon_fee", "sms_tickets", 20_000),
    ]
    # The cycle's last day, not the exclusive end (Jan 1, 2027 is the next cycle's).
    assert lines[0].description.startswith("SMS tickets overage, cycle Jan 1 – Dec 31, 2026")
    voice = lines[1]
    assert (voice.quantity, voice.unit_price_minor, voice.rules) == (16, 150, ("P3", "P4"))
    assert (voice.period_start, voice.period_end) == (YEAR_2026.start, YEAR_2026.end)
    assert voice.description == (
        "Voice tickets overage, cycle Jan 1 – Dec 31, 2026:"
        " 16 over the monthly allowances of 12 months"
    )


def test_P4_each_month_keeps_the_allowance_of_its_tier():
    tier1, tier2 = addon("voice", 1, "year").usage, addon("voice", 2, "year").usage
    months = [
        UsageMonth(period=month(2026, n), used=30, terms=tier1 if n <= 6 else tier2)
        for n in range(1, 13)
    ]
    (line,) = deferred_usage_lines(months=months, cycle=YEAR_2026)
    assert (line.quantity, line.amount_minor) == (60, 9_000)  # 6 x 10 over 20; 0 over 75


def test_P4_a_new_unit_price_mid_cycle_splits_the_addon_line():
    cheap = addon("voice", 1, "year").usage
    dear = MeterTerms(
        meter="voice_tickets", included=20, policy="per_unit", unit_price_minor=Decimal("175")
    )
    months = [
        UsageMonth(period=month(2026, n), used=21, terms=cheap if n <= 6 else dear)
        for n in range(1, 13)
    ]
    lines = deferred_usage_lines(months=months, cycle=YEAR_2026)
    assert [(line.quantity, line.amount_minor) for line in lines] == [(6, 900), (6, 1_050)]


@pytest.mark.parametrize(
    "bad_month",
    [
        UsageMonth(period=month(2027, 1), used=1, terms=addon("voice", 1).usage),  # outside
        UsageMonth(period=month(2026, 1), used=1, terms=addon("automate", 1).usage),  # monthly
        UsageMonth(period=month(2026, 3), used=1, terms=addon("voice", 1).usage),  # overlaps
    ],
)
def test_P4_deferred_months_must_belong_to_the_cycle(bad_month):
    first = UsageMonth(period=month(2026, 3), used=1, terms=addon("voice", 1).usage)
    with pytest.raises(PricingError):
        deferred_usage_lines(months=[first, bad_month], cycle=YEAR_2026)


def test_P4_monthly_subscription_bills_voice_every_month():
    lines = usage_lines(
        terms=sub(plan("basic"), addon("voice", 1)), closed=OCT, usage={"voice_tickets": 25}
    )
    assert amounts(lines) == [("overage", "voice_tickets", 750)]
    assert lines[0].rules == ("P3",)
    with pytest.raises(PricingError):
        price_period_close(
            terms=sub(plan("basic"), addon("voice", 1)),
            closed=OCT,
            cycle=OCT,
            usage={},
            earlier_months=[UsageMonth(period=NOV, used=1, terms=addon("voice", 1).usage)],
        )


# --- P5: integrations ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "included", "fits"),
    [(3, 3, True), (4, 3, False), (150, 150, True), (10**6, None, True)],
)
def test_P5_integrations_within_plan(count, included, fits):
    assert integrations_within_plan(count=count, included=included) is fits


# --- P6: upgrades at once, prorated to the second -------------------------------------------


@pytest.mark.parametrize(
    ("remaining_seconds", "expected"),
    [
        (2_592_000, 30_000),  # the whole 30-day period
        (1_296_000, 15_000),  # exactly half: (36,000 - 6,000) / 2
        (1_296_043, 15_000),  # 15,000.498 -> 15,000
        (1_296_045, 15_001),  # 15,000.521 -> 15,001
        (216, 3),  # 2.5 exactly -> 3 (half up)
        (1, 0),  # 0.0116 -> nothing to bill
    ],
)
def test_P6_plan_upgrade_prorated_to_the_second(remaining_seconds, expected):
    change_at = NOV.end - timedelta(seconds=remaining_seconds)
    lines = upgrade_lines(
        current=sub(plan("basic")), requested=sub(plan("pro")), cycle=NOV, at=change_at
    )
    assert invoice_total(lines) == expected
    if expected:
        (line,) = lines
        assert (line.kind, line.quantity, line.rules) == ("proration", 1, ("P6",))
        assert (line.period_start, line.period_end) == (change_at, NOV.end)
        assert line.description == "Upgrade from Basic plan to Pro plan, rest of the period"


@pytest.mark.parametrize(
    ("remaining_seconds", "expected"),
    [(81, 1), (243, 2), (405, 3), (2_591_999, 16_000)],  # 0.5, 1.5, 2.5, 15,999.99 cents
)
def test_P6_odd_seconds_round_half_up(remaining_seconds, expected):
    # Automate 90 $ -> 250 $: 16,000 x 81 s / 2,592,000 s is exactly half a cent.
    change_at = NOV.end - timedelta(seconds=remaining_seconds)
    lines = upgrade_lines(
        current=sub(plan("basic"), addon("automate", 2)),
        requested=sub(plan("basic"), addon("automate", 3)),
        cycle=NOV,
        at=change_at,
    )
    assert amounts(lines) == [("proration", "automated_interactions", expected)]


def test_P6_sub_second_remainders_are_dropped():
    half = NOV.start + timedelta(seconds=1_296_000)
    assert proration_minor(amount_minor=30_000, period=NOV, at=half) == 15_000
    # 16,000 x 81 s / 30 days is exactly half a cent; 80.5 s counts as 80 s: 0.49 cent.
    assert proration_minor(amount_minor=16_000, period=NOV, at=NOV.end - timedelta(seconds=81)) == 1
    just_after = NOV.end - timedelta(seconds=80, microseconds=500_000)
    assert proration_minor(amount_minor=16_000, period=NOV, at=just_after) == 0
    with pytest.raises(PricingError):
        proration_minor(amount_minor=30_000, period=NOV, at=NOV.end)
    last_instant = NOV.end - timedelta(microseconds=1)
    lines = upgrade_lines(
        current=sub(plan("basic")), requested=sub(plan("pro")), cycle=NOV, at=last_instant
    )
    assert lines == ()  # nothing left to bill, and no error


def test_P6_adding_an_addon_mid_period_bills_its_fee_for_the_rest():
    lines = upgrade_lines(
        current=sub(plan("basic")),
        requested=sub(plan("basic"), addon("voice", 1)),
        cycle=NOV,
        at=at(2026, 11, 16),
    )
    assert amounts(lines) == [("proration", "voice_tickets", 1_500)]
    assert lines[0].description == "Voice 20 add-on added, rest of the period"


def test_P6_addon_tier_upgrade_bills_the_difference():
    lines = upgrade_lines(
        current=sub(plan("basic"), addon("voice", 1), addon("sms", 1)),
        requested=sub(plan("basic"), addon("voice", 2), addon("sms", 1)),
        cycle=NOV,
        at=at(2026, 11, 21),  # 10 of 30 days left
    )
    assert amounts(lines) == [("proration", "voice_tickets", 2_000)]  # (9,000 - 3,000) / 3


def test_P6_annual_plan_upgrade_prorates_the_annual_fee():
    lines = upgrade_lines(
        current=sub(plan("basic", "year")),
        requested=sub(plan("pro", "year")),
        cycle=YEAR_2026,
        at=YEAR_2026.start + timedelta(days=182, hours=12),  # half of 365 days
    )
    assert amounts(lines) == [("proration", None, 150_000)]  # (360,000 - 60,000) / 2


def test_P6_month_to_year_credits_the_unused_month_and_prorates_the_annual_cycle():
    change_at = at(2026, 11, 16)
    # The current month becomes the first month of the annual cycle: Nov 1 2026 → Nov 1 2027
    # (365 days), of which 350 remain at the change.
    new_cycle = Period(start=NOV.start, end=at(2027, 11, 1))
    lines = upgrade_lines(
        current=sub(plan("basic"), addon("voice", 1)),
        requested=sub(plan("basic", "year"), addon("voice", 1, "year")),
        cycle=NOV,
        at=change_at,
        new_cycle=new_cycle,
    )
    assert amounts(lines) == [
        ("credit", None, -3_000),
        ("credit", "voice_tickets", -1_500),
        ("plan_fee", None, 57_534),  # 60,000 × 350/365 = 57,534.2
        ("addon_fee", "voice_tickets", 28_767),  # 30,000 × 350/365 = 28,767.1
    ]
    assert invoice_total(lines) == 81_801
    assert lines[2].period_start == change_at and lines[2].period_end == new_cycle.end


def test_P6_month_to_year_with_a_plan_upgrade_and_a_migrated_period():
    change_at = at(2026, 11, 16)
    new_cycle = Period(start=NOV.start, end=at(2027, 11, 1))
    arguments = {
        "current": sub(plan("basic")),
        "requested": sub(plan("pro", "year")),
        "cycle": NOV,
        "at": change_at,
        "new_cycle": new_cycle,
    }
    # 360,000 × 350/365 = 345,205.5 → 345,205 (half up on .479...)
    assert invoice_total(upgrade_lines(**arguments)) == 345_205 - 3_000
    # A migrated period's monthly fee was never billed here: nothing to credit.
    assert amounts(upgrade_lines(**arguments, is_migrated=True)) == [("plan_fee", None, 345_205)]
    with pytest.raises(PricingError):
        # the annual cycle replaces the current period: it starts where that period started
        upgrade_lines(**{**arguments, "new_cycle": Period(start=change_at, end=at(2027, 11, 16))})


def test_P6_adding_agents_prorates_the_edition_fee():
    lines = upgrade_lines(
        current=sub(edition_terms=edition("professional", 7)),
        requested=sub(edition_terms=edition("professional", 9)),
        cycle=YEAR_2026,
        at=YEAR_2026.start + timedelta(days=182, hours=12),
    )
    assert amounts(lines) == [("proration", None, 138_000)]  # 2 x 115 $ x 12 / 2


def test_P6_commitment_top_up_is_paid_in_full_at_once():
    lines = upgrade_lines(
        current=sub(edition_terms=edition("professional", 7)),
        requested=sub(edition_terms=edition("professional", 7, commitment_units=200)),
        cycle=YEAR_2026,
        at=at(2026, 7, 1),
    )
    assert amounts(lines) == [("commitment", "automated_resolutions", 30_000)]
    added = upgrade_lines(
        current=sub(plan("basic", "year")),
        requested=sub(
            plan("basic", "year"),
            edition_terms=edition("professional", 7, commitment_units=100),
        ),
        cycle=YEAR_2026,
        at=YEAR_2026.start + timedelta(days=182, hours=12),
    )
    assert amounts(added) == [
        ("proration", None, 483_000),  # half of 7 x 115 $ x 12
        ("commitment", "automated_resolutions", 15_000),
    ]
    with pytest.raises(PricingError):  # a top-up is at least 100 resolutions too
        upgrade_lines(
            current=sub(edition_terms=edition("professional", 7, commitment_units=100)),
            requested=sub(edition_terms=edition("professional", 7, commitment_units=150)),
            cycle=YEAR_2026,
            at=at(2026, 7, 1),
        )


@pytest.mark.parametrize(
    ("current", "requested"),
    [
        (sub(plan("pro")), sub(plan("basic"))),  # a downgrade waits for the cycle end (P7)
        (sub(plan("basic")), sub(plan("basic"))),  # nothing changes
        (sub(plan("basic"), addon("voice", 1)), sub(plan("pro"))),  # mixed
    ],
)
def test_P6_only_upgrades_are_billed_mid_cycle(current, requested):
    with pytest.raises(PricingError):
        upgrade_lines(current=current, requested=requested, cycle=NOV, at=at(2026, 11, 16))


def test_P6_change_instant_must_fall_inside_the_cycle():
    with pytest.raises(PricingError):
        upgrade_lines(
            current=sub(plan("basic")), requested=sub(plan("pro")), cycle=NOV, at=at(2026, 12, 1)
        )


# --- P7: classifying a requested change -----------------------------------------------------


@pytest.mark.parametrize(
    ("current", "requested", "expected"),
    [
        (sub(plan("basic")), sub(plan("pro")), "upgrade"),
        (sub(plan("pro")), sub(plan("basic")), "downgrade"),
        (sub(plan("basic")), sub(plan("basic")), "none"),
        (sub(plan("basic")), sub(plan("basic", "year")), "upgrade"),
        (sub(plan("basic", "year")), sub(plan("basic")), "downgrade"),
        (sub(plan("basic")), sub(plan("basic"), addon("voice", 1)), "upgrade"),
        (sub(plan("basic"), addon("voice", 1)), sub(plan("basic")), "downgrade"),
        (sub(plan("basic"), addon("voice", 1)), sub(plan("basic"), addon("voice", 2)), "upgrade"),
        (sub(plan("basic"), addon("voice", 3)), sub(plan("basic"), addon("voice", 2)), "downgrade"),
        # Mixed requests are scheduled whole for the cycle end:
        (sub(plan("basic"), addon("voice", 1)), sub(plan("pro")), "downgrade"),
        (sub(plan("pro")), sub(plan("basic", "year")), "downgrade"),
        (sub(plan("basic"), addon("sms", 2)), sub(plan("pro"), addon("sms", 1)), "downgrade"),
        (
            sub(edition_terms=edition("team", 5)),
            sub(edition_terms=edition("professional", 5)),
            "upgrade",
        ),
        (
            sub(edition_terms=edition("professional", 7)),
            sub(edition_terms=edition("professional", 9)),
            "upgrade",
        ),
        (
            sub(edition_terms=edition("professional", 9)),
            sub(edition_terms=edition("professional", 7)),
            "downgrade",
        ),
        (
            sub(edition_terms=edition("professional", 7, light=3)),
            sub(edition_terms=edition("professional", 7, light=30, at_limit="pause")),
            "none",  # light agents are free; at_limit is a setting
        ),
        (
            sub(edition_terms=edition("professional", 7)),
            sub(edition_terms=edition("professional", 7, commitment_units=100)),
            "upgrade",
        ),
        (
            sub(edition_terms=edition("professional", 7, commitment_units=100)),
            sub(edition_terms=edition("professional", 7)),
            "downgrade",
        ),
    ],
)
def test_P7_classify_change(current, requested, expected):
    assert classify_change(current=current, requested=requested) == expected


def test_P7_a_lateral_move_is_scheduled_like_a_downgrade():
    twin = PlanTerms(
        code="basic_eu",
        name="Basic EU",
        rank=2,
        interval="month",
        currency="USD",
        fee_minor=6_000,
        helpdesk=plan("basic").helpdesk,
    )
    assert classify_change(current=sub(plan("basic")), requested=sub(twin)) == "downgrade"


# --- P8: spending cap -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("charge", "already", "cap", "allowed"),
    [
        (14_000, 0, None, True),  # no cap approved
        (1_000_000, 0, 1_000_000, True),  # exactly the 10,000 $ cap
        (1, 1_000_000, 1_000_000, False),
        (600_000, 500_000, 1_000_000, False),
        (500_000, 500_000, 1_000_000, True),
        (0, 0, 0, True),
    ],
)
def test_P8_within_spending_cap(charge, already, cap, allowed):
    assert (
        within_spending_cap(
            charge_minor=charge, already_charged_in_period_minor=already, cap_minor=cap
        )
        is allowed
    )


@pytest.mark.parametrize(("charge", "already", "cap"), [(-1, 0, 10), (1, -1, 10), (1, 0, -10)])
def test_P8_spending_cap_refuses_negative_amounts(charge, already, cap):
    with pytest.raises(PricingError):
        within_spending_cap(
            charge_minor=charge, already_charged_in_period_minor=already, cap_minor=cap
        )


# --- P9: exact amounts ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("used", "amount", "rules"),
    [
        (1, 34, ("P3", "P9")),  # 33.5 -> 34
        (2, 67, ("P3",)),  # 67 exactly: no rounding
        (3, 101, ("P3", "P9")),  # 3 x 0.335 $ = 1.005 $ -> 101 cents, not 3 x 34 = 102
    ],
)
def test_P9_fractional_unit_price_is_rounded_once_per_line(used, amount, rules):
    fractional = AddOnTerms(
        addon="sms",
        tier="sms-0",
        tier_rank=1,
        name="SMS 0",
        fee_minor=0,
        usage=MeterTerms(
            meter="sms_tickets", included=0, policy="per_unit", unit_price_minor=Decimal("33.5")
        ),
    )
    (line,) = usage_lines(
        terms=sub(plan("basic"), fractional), closed=OCT, usage={"sms_tickets": used}
    )
    assert (line.quantity, line.unit_price_minor, line.amount_minor) == (
        used,
        Decimal("33.5"),
        amount,
    )
    assert type(line.amount_minor) is int
    assert line.rules == rules


@pytest.mark.parametrize(
    ("kind", "quantity", "unit", "amount"),
    [
        ("overage", 3, Decimal("33.5"), 102),  # not the once-rounded product
        ("overage", 1, Decimal("-100"), -100),  # only credits are negative
        ("credit", 1, Decimal("100"), 100),
        ("overage", 1, 100, 100),  # unit prices are Decimals
        ("refund", 1, Decimal("100"), 100),
    ],
)
def test_P9_a_line_is_always_quantity_times_unit_price_rounded_once(kind, quantity, unit, amount):
    with pytest.raises(PricingError):
        Line(
            kind=kind,
            description="x",
            meter=None,
            quantity=quantity,
            unit_price_minor=unit,
            amount_minor=amount,
            rules=("P9",),
            period_start=OCT.start,
            period_end=OCT.end,
        )


def test_P9_periods_are_timezone_aware_and_not_empty():
    with pytest.raises(PricingError):
        Period(start=datetime(2026, 10, 1), end=datetime(2026, 11, 1))
    with pytest.raises(PricingError):
        Period(start=OCT.start, end=OCT.start)


# --- Z8: allocation of automated resolutions ------------------------------------------------


@pytest.mark.parametrize(
    ("code", "full", "light", "interval", "term_months", "allocation"),
    [
        ("professional", 7, 3, "year", None, 840),  # 7 x 10 x 12; light agents count for nothing
        ("team", 10, 0, "year", None, 600),
        ("enterprise_suite", 50, 0, "year", None, 9_000),
        ("enterprise_suite", 100, 0, "year", None, 10_000),  # 18,000 capped at 10,000 a year
        ("professional", 7, 3, "year", 6, 420),  # a six-month term
        ("enterprise_suite", 100, 0, "year", 6, 5_000),  # the cap pro rata
        ("professional", 7, 0, "month", None, 70),  # a monthly term
        ("enterprise_suite", 100, 0, "month", None, 833),  # 10,000 / 12, rounded down
        ("professional", 0, 25, "year", None, 0),
    ],
)
def test_Z8_allocation(code, full, light, interval, term_months, allocation):
    terms = edition(code, full, light, interval, term_months=term_months)
    assert resolution_allocation(edition=terms) == allocation


def test_Z8_light_agents_add_neither_allocation_nor_fee():
    lone, crowded = edition("professional", 7, 0), edition("professional", 7, 40)
    assert resolution_allocation(edition=lone) == resolution_allocation(edition=crowded)
    assert invoice_total(fee_lines(terms=sub(edition_terms=lone), period=YEAR_2026)) == (
        invoice_total(fee_lines(terms=sub(edition_terms=crowded), period=YEAR_2026))
    )


def test_Z8_edition_fee_per_full_agent_for_the_term():
    (line,) = fee_lines(terms=sub(edition_terms=edition("professional", 7, 3)), period=YEAR_2026)
    assert (line.kind, line.quantity, line.unit_price_minor, line.amount_minor) == (
        "edition_fee",
        7,
        Decimal("138000"),
        966_000,
    )


@pytest.mark.parametrize("term_months", [0, 13])
def test_Z8_term_is_one_to_twelve_months(term_months):
    with pytest.raises(PricingError):
        edition("professional", 7, term_months=term_months)
    with pytest.raises(PricingError):
        edition("professional", 7, interval="month", term_months=2)


# --- Z9: beyond the allocation --------------------------------------------------------------


@pytest.mark.parametrize(
    ("earlier", "this_month", "quantity"),
    [
        (0, 840, 0),  # exactly the allocation
        (800, 30, 0),
        (800, 50, 10),  # the month that crosses the limit pays only the part above it
        (900, 20, 20),  # already beyond: every resolution of the month
        (0, 841, 1),
    ],
)
def test_Z9_pay_as_you_go_overage_is_billed_monthly(earlier, this_month, quantity):
    line = resolution_overage_line(
        edition=edition("professional", 7, 3),
        used_this_month=this_month,
        used_earlier=earlier,
        period=OCT,
    )
    if quantity == 0:
        assert line is None
    else:
        assert (line.quantity, line.unit_price_minor, line.amount_minor) == (
            quantity,
            200,
            quantity * 200,
        )
        assert line.rules == ("Z8", "Z9")


def test_Z9_commitment_block_then_overage():
    committed = edition("professional", 7, 3, commitment_units=100)
    assert resolution_limit(edition=committed) == 940
    purchase = commitment_line(edition=committed, units=100, term=YEAR_2026)
    assert (purchase.kind, purchase.quantity, purchase.amount_minor) == ("commitment", 100, 15_000)
    assert (
        resolution_overage_line(edition=committed, used_this_month=40, used_earlier=900, period=OCT)
        is None
    )
    line = resolution_overage_line(
        edition=committed, used_this_month=50, used_earlier=900, period=OCT
    )
    assert (line.quantity, line.amount_minor) == (10, 2_000)
    assert line.description == (
        "Professional, automated resolutions, October 2026: 10 beyond the term's limit of 940"
        " (840 allocated + 100 committed)"
    )


def test_Z9_fee_lines_carry_the_commitment_of_the_term():
    lines = fee_lines(
        terms=sub(edition_terms=edition("professional", 7, commitment_units=300)), period=YEAR_2026
    )
    assert amounts(lines) == [
        ("edition_fee", None, 966_000),
        ("commitment", "automated_resolutions", 45_000),
    ]


@pytest.mark.parametrize(("at_limit", "amount"), [("keep", 100_000), ("pause", 0)])
def test_Z9_pause_bills_nothing_keep_bills_overage(at_limit, amount):
    terms = sub(edition_terms=edition("professional", 7, at_limit=at_limit))
    lines = usage_lines(
        terms=terms,
        closed=OCT,
        usage={"automated_resolutions": 500},
        resolutions_used_earlier=840,
    )
    assert invoice_total(lines) == amount


def test_Z9_overage_is_monthly_even_on_an_annual_term():
    lines = price_period_close(
        terms=sub(edition_terms=edition("professional", 7)),
        closed=OCT,
        cycle=YEAR_2026,
        usage={"automated_resolutions": 100},
        resolutions_used_earlier=800,
    )
    assert amounts(lines) == [("overage", "automated_resolutions", 12_000)]


@pytest.mark.parametrize(
    "bad",
    [
        {"commitment_units": 99},
        {"commitment_unit_minor": Decimal("200")},  # commitment must be cheaper than overage
        {"overage_unit_minor": 2.0},
        {"at_limit": "throttle"},
    ],
)
def test_Z9_edition_terms_refuse_rule_breaking_values(bad):
    with pytest.raises(PricingError):
        edition("professional", 7, **bad)


def test_Z9_commitment_purchase_is_at_least_the_minimum():
    with pytest.raises(PricingError):
        commitment_line(edition=edition("professional", 7), units=99, term=YEAR_2026)
    small = edition("professional", 7, min_commitment_units=50, commitment_units=50)
    assert commitment_line(edition=small, units=50, term=YEAR_2026).amount_minor == 7_500


# --- F6: late usage -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "billed", "now", "kind", "quantity", "amount"),
    [
        ("basic", 250, 260, None, 0, 0),  # still within October's allowance
        ("basic", 350, 380, None, 0, 0),  # still within the block already billed
        ("basic", 250, 380, "late_usage", 1, 4_000),
        ("basic", 350, 420, "late_usage", 1, 4_000),
        ("starter", 60, 65, "late_usage", 5, 200),
        ("starter", 40, 65, "late_usage", 15, 600),
        ("basic", 420, 380, "credit", 1, -4_000),  # a late event un-counted a ticket (A4)
    ],
)
def test_F6_late_usage_line(code, billed, now, kind, quantity, amount):
    line = late_usage_line(
        late=LateUsage(period=OCT, terms=plan(code).helpdesk, billed_units=billed, units=now)
    )
    if kind is None:
        assert line is None
        return
    assert (line.kind, line.quantity, line.amount_minor) == (kind, quantity, amount)
    assert (line.period_start, line.period_end) == (OCT.start, OCT.end)
    assert "F6" in line.rules and "P2" in line.rules


def test_F6_late_usage_is_its_own_line_on_the_next_invoice():
    late = LateUsage(period=OCT, terms=plan("basic").helpdesk, billed_units=250, units=380)
    lines = price_period_close(
        terms=sub(plan("basic")),
        closed=NOV,
        cycle=NOV,
        usage={"helpdesk_tickets": 301},
        late=[late],
        next_cycle=DEC,
    )
    assert amounts(lines) == [
        ("overage", "helpdesk_tickets", 4_000),
        ("late_usage", "helpdesk_tickets", 4_000),
        ("plan_fee", None, 6_000),
    ]
    assert lines[1].description == (
        "Late usage, helpdesk tickets, October 2026: 130 units after invoicing"
    )
    with pytest.raises(PricingError):  # late usage is for periods invoiced before this one
        price_period_close(terms=sub(plan("basic")), closed=OCT, cycle=OCT, usage={}, late=[late])


@pytest.mark.parametrize(
    ("released", "words"),
    [
        (0, "Late usage, helpdesk tickets, October 2026: 130 units after invoicing"),
        (
            30,
            "Late usage, helpdesk tickets, October 2026: 130 units after invoicing, 30 of them "
            "released after review",
        ),
        (130, "Usage released after review, helpdesk tickets, October 2026: 130 units"),
        (200, "Usage released after review, helpdesk tickets, October 2026: 130 units"),
    ],
)
def test_F6_late_units_released_after_review_say_so(released, words):
    """Units the spike guard held and someone released after the close are late usage too,
    priced the same (F6, P2); the line says why they come now."""
    late = LateUsage(
        period=OCT, terms=plan("basic").helpdesk, billed_units=250, units=380, released=released
    )
    line = late_usage_line(late=late)
    assert (line.kind, line.amount_minor, line.rules) == ("late_usage", 4_000, ("F6", "P2"))
    assert line.description == words


def test_F6_late_resolutions_use_the_terms_running_total():
    terms = resolution_terms(edition=edition("professional", 7))  # limit 840, 2 $ beyond
    line = late_usage_line(late=LateUsage(period=OCT, terms=terms, billed_units=900, units=910))
    assert (line.quantity, line.amount_minor, line.rules) == (10, 2_000, ("F6", "Z9"))
    paused = resolution_terms(edition=edition("professional", 7, at_limit="pause"))
    assert (
        late_usage_line(late=LateUsage(period=OCT, terms=paused, billed_units=900, units=910))
        is None
    )

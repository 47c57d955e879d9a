"""Tax arithmetic in cents (docs/tax.md, "The arithmetic"): worked examples per branch, several
rates, credit notes, and the properties that keep it exact (hypothesis)."""

from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plans.tax import (
    TaxableLine,
    TaxArithmeticError,
    TaxDecision,
    TaxRate,
    Treatment,
    credit_note_tax,
    invoice_tax,
    tax_compute,
    tax_on,
)

PROPERTIES = settings(max_examples=300, deadline=None, database=None)

FR20 = TaxRate(Decimal("20"), "VAT FR 20 %")
DE19 = TaxRate(Decimal("19"), "VAT DE 19 %")
FI255 = TaxRate(Decimal("25.5"), "VAT FI 25.5 %")
WA65 = TaxRate(Decimal("6.5"), "WA sales tax 6.5 %")
REVERSE = TaxRate(Decimal("0"), "Reverse charge")


def single(rate, treatment=Treatment.DOMESTIC):
    return TaxDecision(treatment=treatment, rates=(rate,))


def half_up(value: Decimal) -> int:
    """The reference: Decimal's own ROUND_HALF_UP on the exact product (half away from zero)."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


# --- Worked examples (each one is in docs/tax.md).


def test_worked_example_domestic_fr_20_percent():
    # Plan 49.00 + overage 12.34 = 61.34 EUR; VAT 12.268 -> 12.27; total 73.61.
    breakdown = invoice_tax(decision=single(FR20), amounts_minor=[4_900, 1_234])
    assert (breakdown.subtotal_minor, breakdown.tax_minor, breakdown.total_minor) == (
        6_134,
        1_227,
        7_361,
    )


def test_worked_example_oss_de_19_percent():
    # 61.34 EUR at 19 % -> 11.6546 -> 11.65; total 72.99.
    breakdown = invoice_tax(decision=single(DE19, Treatment.OSS), amounts_minor=[4_900, 1_234])
    assert (breakdown.tax_minor, breakdown.total_minor) == (1_165, 7_299)


def test_worked_example_reverse_charge_keeps_the_base_at_zero_rate():
    breakdown = invoice_tax(
        decision=single(REVERSE, Treatment.REVERSE_CHARGE), amounts_minor=[4_900, 1_234]
    )
    row = breakdown.per_rate[0]
    assert (row.taxable_minor, row.tax_minor, breakdown.total_minor) == (6_134, 0, 6_134)


def test_worked_example_us_registered_state_6_5_percent():
    # 61.34 USD at 6.5 % -> 3.9871 -> 3.99.
    breakdown = invoice_tax(
        decision=single(WA65, Treatment.US_SALES_TAX), amounts_minor=[4_900, 1_234]
    )
    assert (breakdown.tax_minor, breakdown.total_minor) == (399, 6_533)


def test_worked_example_several_rates_each_rounded_once_on_its_sum():
    # A supply split at a rate change (Finland, 1 Sep 2024: 24 % -> 25.5 %) gives two rates.
    fi24 = TaxRate(Decimal("24"), "VAT FI 24 %")
    lines = [
        TaxableLine(1_005, fi24),
        TaxableLine(1_005, fi24),  # 2,010 at 24 % -> 482.4 -> 482
        TaxableLine(333, FI255),
        TaxableLine(333, FI255),  # 666 at 25.5 % -> 169.83 -> 170
    ]
    breakdown = tax_compute(lines=lines)
    assert [(r.rate.label, r.taxable_minor, r.tax_minor) for r in breakdown.per_rate] == [
        ("VAT FI 24 %", 2_010, 482),
        ("VAT FI 25.5 %", 666, 170),
    ]
    assert (breakdown.subtotal_minor, breakdown.tax_minor, breakdown.total_minor) == (
        2_676,
        652,
        3_328,
    )


def test_per_line_rounding_would_be_a_cent_off_where_ours_is_not():
    # Three lines of 0.50 EUR at 19 %: each owes 9.5 cents, which per-line rounding makes 10,
    # 30 in all; the sum, 1.50 EUR, owes 28.5 cents -> 29. Summing rounded lines overcharges.
    amounts = [50, 50, 50]
    per_line_sum = sum(tax_on(amount, DE19) for amount in amounts)
    ours = invoice_tax(decision=single(DE19, Treatment.OSS), amounts_minor=amounts)
    assert per_line_sum == 30
    assert ours.tax_minor == 29 == half_up(Decimal(150) * Decimal("0.19"))


def test_rounding_is_half_up_on_the_exact_half():
    # 0.25 EUR at 10 % owes exactly 2.5 cents -> 3 (half up).
    assert tax_on(25, TaxRate(Decimal("10"), "10 %")) == 3
    # A negative sum (a credit line larger than the charges) mirrors it: -2.5 -> -3.
    assert tax_on(-25, TaxRate(Decimal("10"), "10 %")) == -3


def test_worked_example_credit_note_in_proportion_to_its_invoice():
    # Invoice 61.34 EUR + 12.27 VAT (FR 20 %); a credit note of 30.67 (half) carries 6.13 VAT
    # (30.67 * 20 % = 6.134), the second half 6.14: together exactly the 12.27 invoiced.
    invoice = invoice_tax(decision=single(FR20), amounts_minor=[4_900, 1_234])
    first = credit_note_tax(invoice=invoice, credit_minor=3_067)
    second = credit_note_tax(invoice=invoice, credit_minor=3_067, credited_before_minor=3_067)
    assert (first.tax_minor, first.total_minor) == (613, 3_680)
    assert (second.tax_minor, second.total_minor) == (614, 3_681)
    assert first.tax_minor + second.tax_minor == invoice.tax_minor


def test_credit_note_on_a_two_rate_invoice_splits_by_each_rates_base():
    invoice = tax_compute(lines=[TaxableLine(3_000, FR20), TaxableLine(1_000, DE19)])
    note = credit_note_tax(invoice=invoice, credit_minor=2_000)
    assert [(r.taxable_minor, r.tax_minor) for r in note.per_rate] == [(1_500, 300), (500, 95)]


def test_credit_note_on_a_shopify_invoice_carries_no_tax():
    invoice = invoice_tax(
        decision=TaxDecision(Treatment.SHOPIFY_CHANNEL, ()), amounts_minor=[4_900]
    )
    assert credit_note_tax(invoice=invoice, credit_minor=900).tax_minor == 0


def test_a_credit_note_cannot_exceed_its_invoice():
    invoice = invoice_tax(decision=single(FR20), amounts_minor=[1_000])
    with pytest.raises(TaxArithmeticError):
        credit_note_tax(invoice=invoice, credit_minor=600, credited_before_minor=500)
    with pytest.raises(TaxArithmeticError):
        credit_note_tax(invoice=invoice, credit_minor=0)


def test_amounts_are_integer_minor_units():
    with pytest.raises(TypeError):
        tax_compute(lines=[TaxableLine(10.5, FR20)])


# --- Properties.

rates = st.sampled_from(["0", "5.5", "6.5", "7", "19", "20", "21", "25.5", "27"]).map(
    lambda r: TaxRate(Decimal(r), f"{r} %")
)
amounts = st.integers(min_value=-50_000, max_value=2_000_000)


@PROPERTIES
@given(rate=rates, lines=st.lists(amounts, min_size=1, max_size=30))
def test_tax_per_rate_is_exactly_the_rate_times_the_sum_rounded_half_up_once(rate, lines):
    breakdown = invoice_tax(decision=single(rate), amounts_minor=lines)
    assert breakdown.tax_minor == half_up(Decimal(sum(lines)) * rate.rate / 100)
    assert breakdown.total_minor == breakdown.subtotal_minor + breakdown.tax_minor
    assert breakdown.subtotal_minor == sum(lines)


@PROPERTIES
@given(lines=st.lists(st.tuples(amounts, rates), min_size=1, max_size=30))
def test_several_rates_each_rounded_once_and_the_order_of_lines_changes_nothing(lines):
    taxable = [TaxableLine(amount, rate) for amount, rate in lines]
    breakdown = tax_compute(lines=taxable)
    for row in breakdown.per_rate:
        base = sum(a for a, r in lines if r == row.rate)
        assert row.taxable_minor == base
        assert row.tax_minor == half_up(Decimal(base) * row.rate.rate / 100)
    reordered = tax_compute(lines=list(reversed(taxable)))
    assert reordered.tax_minor == breakdown.tax_minor
    assert reordered.total_minor == breakdown.total_minor


@PROPERTIES
@given(
    lines=st.lists(st.tuples(st.integers(1, 500_000), rates), min_size=1, max_size=6),
    cuts=st.lists(st.integers(0, 1_000_000), max_size=5),
)
def test_credit_notes_crediting_an_invoice_in_full_give_back_exactly_its_tax(lines, cuts):
    invoice = tax_compute(lines=[TaxableLine(a, r) for a, r in lines])
    total = invoice.subtotal_minor
    points = sorted({total * c // 1_000_000 for c in cuts} - {0, total})
    before, credited_tax, credited_base = 0, 0, 0
    for end in [*points, total]:
        note = credit_note_tax(
            invoice=invoice, credit_minor=end - before, credited_before_minor=before
        )
        assert sum(r.taxable_minor for r in note.per_rate) == note.subtotal_minor
        credited_tax += note.tax_minor
        credited_base += note.subtotal_minor
        before = end
    assert (credited_base, credited_tax) == (invoice.subtotal_minor, invoice.tax_minor)

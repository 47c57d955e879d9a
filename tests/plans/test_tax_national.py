"""VAT stated in the seller's national currency (Article 230; docs/tax.md "VAT in euros"):
the arithmetic in cents, which documents state it, and ECB's file format. Pure: no database."""

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from plans.tax import TaxDecision, TaxRate, Treatment, credit_note_tax, invoice_tax, tax_compute
from plans.tax.arithmetic import TaxableLine
from plans.tax.ecb_file import EcbFileError, ecb_file_read
from plans.tax.national import (
    EcbRate,
    NationalVat,
    credit_note_national_vat,
    national_vat,
    rate_usable,
    states_vat,
    to_national_minor,
)

USD = EcbRate("USD", Decimal("1.0856"), date(2026, 12, 4))
FR20 = TaxRate(Decimal(20), "VAT FR 20 %")
DOMESTIC = TaxDecision(Treatment.DOMESTIC, (FR20,))


# --- Worked examples (docs/pricing.md, "VAT in euros") ---------------------------------------


def test_a_usd_invoice_of_329_00_states_its_65_80_vat_as_60_61_eur():
    breakdown = invoice_tax(decision=DOMESTIC, amounts_minor=[32900])
    assert breakdown.tax_minor == 6580
    national = national_vat(breakdown=breakdown, currency="USD", rate=USD)
    # 65.80 / 1.0856 = 60.6116… → 60.61
    assert national.per_rate == (("VAT FR 20 %", 6061),)
    assert national.tax_minor == 6061
    assert national.sentence() == (
        "VAT due in EUR: €60.61 (ECB rate 1 EUR = 1.0856 USD of 2026-12-04)"
    )


@pytest.mark.parametrize(
    ("tax_minor", "rate", "euros_minor"),
    [
        (6580, "1.0856", 6061),  # 60.6116 → 60.61
        (1, "1.0856", 1),  # 0.0092 → 0.01
        (5, "1", 5),  # same value: no rounding at all
        (1000, "1.6", 625),  # exactly 6.25
        (1001, "2", 501),  # 5.005: a half, rounded up
        (-1001, "2", -501),  # a credit's half rounds away from zero, the mirror
        (12345, "0.84638", 14586),  # GBP 123.45 / 0.84638 = 145.8565… → 145.86
    ],
)
def test_each_amount_is_rounded_half_up_once(tax_minor, rate, euros_minor):
    usd = EcbRate("USD", Decimal(rate), date(2026, 12, 4))
    assert to_national_minor(tax_minor, currency="USD", rate=usd, national="EUR") == euros_minor


def test_two_rates_are_converted_each_once_and_the_total_is_their_sum():
    fi24, fi255 = TaxRate(Decimal(24), "VAT FI 24 %"), TaxRate(Decimal("25.5"), "VAT FI 25.5 %")
    breakdown = tax_compute(
        lines=[TaxableLine(1005, fi24), TaxableLine(1005, fi24), TaxableLine(333, fi255)]
    )
    assert [row.tax_minor for row in breakdown.per_rate] == [482, 85]
    national = national_vat(breakdown=breakdown, currency="USD", rate=USD)
    # 4.82 / 1.0856 = 4.4399… → 4.44; 0.85 / 1.0856 = 0.7829… → 0.78; the total 5.22, where
    # converting the total tax (5.67 → 5.2229… → 5.22) happens to agree, but need not.
    assert national.per_rate == (("VAT FI 24 %", 444), ("VAT FI 25.5 %", 78))
    assert national.tax_minor == 522


def test_credit_notes_at_the_invoice_rate_give_back_exactly_its_euros():
    breakdown = invoice_tax(decision=DOMESTIC, amounts_minor=[32900])
    invoice = national_vat(breakdown=breakdown, currency="USD", rate=USD)
    given_back = 0
    credited = 0
    for amount in (10001, 10001, 12898):  # three notes crediting the whole invoice
        before = credit_note_tax(invoice=breakdown, credit_minor=credited) if credited else None
        after = credit_note_tax(invoice=breakdown, credit_minor=credited + amount)
        note = credit_note_national_vat(
            invoice=invoice,
            invoice_currency="USD",
            tax_before=[before.tax_minor if before else 0],
            tax_after=[after.tax_minor],
            labels=["VAT FR 20 %"],
        )
        assert note.rate == USD and note.tax_minor < 0
        given_back += note.tax_minor
        credited += amount
    assert given_back == -invoice.tax_minor == -6061


def test_a_note_giving_back_the_whole_vat_states_the_invoices_euros_negated():
    invoice = NationalVat("EUR", USD, (("VAT FR 20 %", 6061),), 6061)
    assert invoice.negative() == NationalVat("EUR", USD, (("VAT FR 20 %", -6061),), -6061)


def test_with_no_rate_known_the_document_says_so_and_states_no_amount():
    breakdown = invoice_tax(decision=DOMESTIC, amounts_minor=[32900])
    national = national_vat(breakdown=breakdown, currency="USD", rate=None)
    assert national == NationalVat("EUR", None)
    assert national.sentence() == "VAT in EUR: rate unavailable"
    note = credit_note_national_vat(
        invoice=national, invoice_currency="USD", tax_before=[0], tax_after=[10], labels=["x"]
    )
    assert note.sentence() == "VAT in EUR: rate unavailable"


def test_what_is_frozen_reads_back_as_it_was():
    national = national_vat(
        breakdown=invoice_tax(decision=DOMESTIC, amounts_minor=[32900]), currency="USD", rate=USD
    )
    data = national.as_data()
    assert data["rate"] == {
        "currency": "USD",
        "units_per_eur": "1.0856",
        "published_on": "2026-12-04",
    }
    assert NationalVat.from_data(data) == national
    assert NationalVat.from_data(NationalVat("EUR", None).as_data()) == NationalVat("EUR", None)


def test_a_rate_of_another_currency_is_refused():
    breakdown = invoice_tax(decision=DOMESTIC, amounts_minor=[100])
    with pytest.raises(ValueError, match="USD rate cannot convert GBP"):
        national_vat(breakdown=breakdown, currency="GBP", rate=USD)


# --- Which documents state it -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("treatment", "seller", "currency", "states"),
    [
        (Treatment.DOMESTIC, "FR", "USD", True),
        (Treatment.OSS, "FR", "GBP", True),
        (Treatment.OSS, "DE", "USD", True),
        (Treatment.DOMESTIC, "FR", "EUR", False),  # in the national currency already
        (Treatment.REVERSE_CHARGE, "FR", "USD", False),  # no VAT charged
        (Treatment.OUTSIDE_EU, "FR", "USD", False),
        (Treatment.US_SALES_TAX, "FR", "USD", False),  # sales tax, not VAT
        (Treatment.SHOPIFY_CHANNEL, "FR", "USD", False),
        (Treatment.DOMESTIC, "PL", "USD", False),  # outside the euro area: out of scope
        (Treatment.OSS, "US", "USD", False),
    ],
)
def test_vat_charged_by_a_euro_area_seller_in_another_currency_is_stated(
    treatment, seller, currency, states
):
    decision = TaxDecision(treatment, (FR20,))
    assert states_vat(decision=decision, seller_country=seller, currency=currency) is states


@pytest.mark.parametrize(
    ("published_on", "usable"),
    [
        (date(2026, 12, 4), True),  # Friday's rate on a Sunday
        (date(2026, 12, 6), True),
        (date(2026, 11, 26), True),  # ten days: Easter and Christmas gaps are shorter
        (date(2026, 11, 25), False),  # eleven: our daily load has stopped
        (date(2026, 12, 7), False),  # published after the issue date
    ],
)
def test_only_a_recent_rate_is_the_latest_published(published_on, usable):
    rate = EcbRate("USD", Decimal("1.0856"), published_on)
    on = date(2026, 12, 6)
    assert (rate_usable(rate, on=on) == rate) is usable
    assert rate_usable(None, on=on) is None


# --- ECB's file ------------------------------------------------------------------------------

ENVELOPE = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" '
    'xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">'
    "<gesmes:subject>Reference rates</gesmes:subject><Cube>{days}</Cube></gesmes:Envelope>"
)


def ecb_xml(days: str) -> str:
    return ENVELOPE.format(days=days)


def test_the_packaged_file_is_a_day_of_ecb_rates():
    path = Path(__file__).resolve().parents[2] / "plans" / "tax" / "ecb_rates.xml"
    rates = {rate.currency: rate for rate in ecb_file_read(path.read_bytes())}
    assert len(rates) == 30
    assert rates["USD"] == EcbRate("USD", Decimal("1.0705"), date(2024, 6, 28))
    assert rates["GBP"].units_per_eur == Decimal("0.84638")


def test_a_file_of_several_days_gives_every_rate():
    text = ecb_xml(
        "<Cube time='2026-12-04'><Cube currency='USD' rate='1.0856'/>"
        "<Cube currency='JPY' rate='162.51'/></Cube>"
        '<Cube time="2026-12-03"><Cube currency="USD" rate="1.0849"/></Cube>'
    )
    assert ecb_file_read(text) == (
        EcbRate("USD", Decimal("1.0856"), date(2026, 12, 4)),
        EcbRate("JPY", Decimal("162.51"), date(2026, 12, 4)),
        EcbRate("USD", Decimal("1.0849"), date(2026, 12, 3)),
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<html>ECB is down", "not an ECB rates file"),
        ("<html><body>Maintenance</body></html>", 'no <Cube time="…"> day'),
        (ecb_xml("<Cube time='04/12/2026'><Cube currency='USD' rate='1'/></Cube>"), "not a YYYY"),
        (ecb_xml("<Cube time='2026-12-04'></Cube>"), "2026-12-04: no rate"),
        (ecb_xml("<Cube time='2026-12-04'><Cube currency='usd' rate='1'/></Cube>"), "capital"),
        (ecb_xml("<Cube time='2026-12-04'><Cube currency='USD' rate='n/a'/></Cube>"), "'n/a'"),
        (ecb_xml("<Cube time='2026-12-04'><Cube currency='USD' rate='-1'/></Cube>"), "'-1'"),
        (ecb_xml("<Cube time='2026-12-04'><Cube currency='USD' rate='NaN'/></Cube>"), "'NaN'"),
        (
            ecb_xml("<Cube time='2026-12-04'><Cube currency='USD' rate='1.1234567'/></Cube>"),
            "more than 6 decimals",
        ),
        (
            ecb_xml(
                "<Cube time='2026-12-04'><Cube currency='USD' rate='1'/>"
                "<Cube currency='USD' rate='1'/></Cube>"
            ),
            "given twice",
        ),
        (
            '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>',
            "not an ECB rates file",  # defusedxml refuses entities
        ),
    ],
)
def test_a_malformed_file_is_refused_with_its_problem(text, problem):
    with pytest.raises(EcbFileError) as refused:
        ecb_file_read(text)
    assert problem in str(refused.value)


def test_every_problem_of_a_file_is_listed():
    text = ecb_xml(
        "<Cube time='2026-12-04'><Cube currency='USD' rate='x'/>"
        "<Cube currency='GBP' rate='0'/><Cube currency='JPY' rate='162.51'/></Cube>"
    )
    with pytest.raises(EcbFileError) as refused:
        ecb_file_read(text)
    assert len(refused.value.problems) == 2

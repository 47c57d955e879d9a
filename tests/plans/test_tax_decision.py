"""The tax decision tree (docs/tax.md): one test per branch, named after it, plus the rate table.

Pure: plain values in, a frozen TaxDecision out; the date of supply is given, never "today".
"""

import json
from datetime import date
from decimal import Decimal

import pytest

from plans.tax import (
    EU_MEMBER_STATES,
    BuyerTax,
    SellerTax,
    TaxDecision,
    Treatment,
    UnknownRate,
    invoice_tax,
    rate_for,
    tax_decide,
)
from plans.tax.rates import HERE, table_from_data

ON = date(2026, 11, 1)
SELLER_VAT = "FR11123456782"
BUYER_VAT = "DE123456788"
FR_SELLER = SellerTax(country="FR", vat_id=SELLER_VAT, oss_registered=True, us_states=frozenset())
FR_SELLER_IN_WA = SellerTax(
    country="FR", vat_id=SELLER_VAT, oss_registered=True, us_states=frozenset({"WA"})
)


def decide(buyer, seller=FR_SELLER, channel="stripe", on=ON, **extra):
    return tax_decide(seller=seller, buyer=buyer, channel=channel, supplied_on=on, **extra)


def test_domestic_fr_to_fr_charges_french_vat_at_20_percent():
    decision = decide(BuyerTax(country="FR"))
    assert decision.treatment == Treatment.DOMESTIC
    assert decision.rate.rate == Decimal("20")
    assert decision.rate.label == "VAT FR 20 %"
    assert decision.seller_tax_id == SELLER_VAT
    assert decision.mentions == ()
    # 100.00 EUR -> 20.00 EUR of VAT, 120.00 EUR in all.
    assert invoice_tax(decision=decision, amounts_minor=[10_000]).total_minor == 12_000


def test_domestic_with_a_valid_vat_id_is_still_domestic_vat():
    # No reverse charge inside one member state: the French id changes nothing.
    decision = decide(BuyerTax(country="FR", vat_id="FR44732829320", vat_id_status="valid"))
    assert decision.treatment == Treatment.DOMESTIC
    assert decision.rate.rate == Decimal("20")
    assert decision.buyer_tax_id == "FR44732829320"


def test_reverse_charge_fr_to_de_with_a_valid_vat_id():
    decision = decide(BuyerTax(country="DE", vat_id=BUYER_VAT, vat_id_status="valid"))
    assert decision.treatment == Treatment.REVERSE_CHARGE
    assert decision.rate.rate == Decimal("0")
    assert decision.rate.label == "Reverse charge"
    assert any("Article 196 of Directive 2006/112/EC" in m for m in decision.mentions)
    # Both VAT ids are printed on a reverse-charge invoice (EN 16931 BR-AE-02/03).
    assert (decision.seller_tax_id, decision.buyer_tax_id) == (SELLER_VAT, BUYER_VAT)
    breakdown = invoice_tax(decision=decision, amounts_minor=[10_000])
    assert (breakdown.tax_minor, breakdown.total_minor) == (0, 10_000)
    assert breakdown.per_rate[0].taxable_minor == 10_000


def test_oss_fr_to_de_without_a_vat_id_charges_german_vat_at_19_percent():
    decision = decide(BuyerTax(country="DE"))
    assert decision.treatment == Treatment.OSS
    assert decision.rate.rate == Decimal("19")
    assert decision.rate.label == "VAT DE 19 %"
    assert any("One-Stop Shop" in m for m in decision.mentions)
    assert not decision.vat_id_unconfirmed
    assert invoice_tax(decision=decision, amounts_minor=[10_000]).tax_minor == 1_900


def test_oss_with_an_invalid_vat_id_charges_german_vat():
    decision = decide(BuyerTax(country="DE", vat_id=BUYER_VAT, vat_id_status="invalid"))
    assert decision.treatment == Treatment.OSS
    assert decision.rate.rate == Decimal("19")
    assert not decision.vat_id_unconfirmed


@pytest.mark.parametrize("status", ["pending", "unavailable", "unchecked"])
def test_oss_vies_not_confirmed_charges_vat_and_says_so(status):
    # VIES down with no earlier good answer: VAT is charged, flagged for a credit note later.
    decision = decide(BuyerTax(country="DE", vat_id=BUYER_VAT, vat_id_status=status))
    assert decision.treatment == Treatment.OSS
    assert decision.vat_id_unconfirmed
    assert any(BUYER_VAT in m and "credit note" in m for m in decision.mentions)


def test_domestic_for_other_eu_consumers_when_the_seller_is_not_oss_registered():
    # Under the EUR 10,000 threshold (Art. 59c) an EU seller charges its own VAT.
    seller = SellerTax(country="FR", vat_id=SELLER_VAT, oss_registered=False)
    decision = decide(BuyerTax(country="DE"), seller=seller)
    assert decision.treatment == Treatment.DOMESTIC
    assert decision.rate.label == "VAT FR 20 %"


def test_us_not_registered_fr_to_us_charges_no_tax_and_says_why():
    decision = decide(BuyerTax(country="US", us_state="NY"))
    assert decision.treatment == Treatment.US_NOT_REGISTERED
    assert decision.rate.rate == Decimal("0")
    assert any("not registered" in m and "NY" in m for m in decision.mentions)
    assert any("outside the EU" in m for m in decision.mentions)
    assert invoice_tax(decision=decision, amounts_minor=[10_000]).total_minor == 10_000


def test_us_sales_tax_in_a_registered_state_from_the_operator_table():
    decision = decide(BuyerTax(country="US", us_state="wa"), seller=FR_SELLER_IN_WA)
    assert decision.treatment == Treatment.US_SALES_TAX
    assert decision.rate.rate == Decimal("6.5")
    assert decision.rate.label == "WA sales tax 6.5 %"
    # 100.00 USD at 6.5 % -> 6.50 USD.
    assert invoice_tax(decision=decision, amounts_minor=[10_000]).tax_minor == 650


def test_us_sales_tax_reads_the_table_it_is_given_with_its_dates():
    table = table_from_data(
        {"TX": [{"effective_from": "2026-01-01", "rate": "6.25", "source": "operator"}]},
        key="rate",
    )
    seller = SellerTax(country="US", us_states=frozenset({"TX"}))
    decision = decide(BuyerTax(country="US", us_state="TX"), seller=seller, us_rate_table=table)
    assert decision.rate.rate == Decimal("6.25")
    assert decision.mentions == ()  # a US seller prints no EU VAT mention
    with pytest.raises(UnknownRate):
        decide(
            BuyerTax(country="US", us_state="TX"),
            seller=seller,
            us_rate_table=table,
            on=date(2025, 12, 31),
        )


def test_outside_eu_fr_to_gb_no_vat_with_the_mention():
    decision = decide(BuyerTax(country="GB", vat_id="GB980780684"))
    assert decision.treatment == Treatment.OUTSIDE_EU
    assert decision.rate.rate == Decimal("0")
    assert any("outside the EU" in m and "2006/112/EC" in m for m in decision.mentions)


def test_shopify_channel_carries_no_tax_from_us():
    decision = decide(BuyerTax(country="FR"), channel="shopify")
    assert decision.treatment == Treatment.SHOPIFY_CHANNEL
    assert decision.rates == ()
    assert decision.rate is None
    assert any("Shopify" in m for m in decision.mentions)
    breakdown = invoice_tax(decision=decision, amounts_minor=[4_900, 1_000])
    assert (breakdown.per_rate, breakdown.tax_minor, breakdown.total_minor) == ((), 0, 5_900)


def test_a_buyer_without_a_country_is_taxed_at_the_sellers_rate():
    assert decide(BuyerTax(country="")).rate.label == "VAT FR 20 %"


def test_the_decision_is_frozen_and_stored_as_it_was():
    decision = decide(BuyerTax(country="DE", vat_id=BUYER_VAT, vat_id_status="unavailable"))
    with pytest.raises(AttributeError):
        decision.treatment = Treatment.DOMESTIC
    stored = json.loads(json.dumps(decision.as_data()))
    assert stored["rates"] == [{"rate": "19", "label": "VAT DE 19 %"}]
    assert TaxDecision.from_data(stored) == decision


# --- The EU rate table: dated entries, each with its source.


@pytest.mark.parametrize(
    ("country", "on", "rate"),
    [
        ("FR", date(2026, 11, 1), "20"),
        ("DE", date(2026, 11, 1), "19"),
        ("FI", date(2024, 8, 31), "24"),
        ("FI", date(2024, 9, 1), "25.5"),
        ("EE", date(2025, 6, 30), "22"),
        ("EE", date(2025, 7, 1), "24"),
        ("SK", date(2024, 12, 31), "20"),
        ("SK", date(2025, 1, 1), "23"),
        ("RO", date(2025, 7, 31), "19"),
        ("RO", date(2025, 8, 1), "21"),
        ("LU", date(2023, 6, 1), "16"),
        ("LU", date(2024, 6, 1), "17"),
        ("GR", date(2026, 11, 1), "24"),
    ],
)
def test_rate_for_reads_the_rate_in_force_on_the_date_of_supply(country, on, rate):
    assert rate_for(country, on) == Decimal(rate)


def test_a_rate_change_applies_to_supplies_after_it_in_the_decision():
    before = decide(BuyerTax(country="RO"), on=date(2025, 7, 31))
    after = decide(BuyerTax(country="RO"), on=date(2025, 8, 1))
    assert (before.rate.label, after.rate.label) == ("VAT RO 19 %", "VAT RO 21 %")


def test_rate_for_refuses_what_it_does_not_know():
    with pytest.raises(UnknownRate):
        rate_for("CH", ON)  # not a member state
    with pytest.raises(UnknownRate):
        rate_for("FR", date(2020, 12, 31))  # before the table starts


def test_every_member_state_has_a_sourced_rate_file_entry():
    data = json.loads((HERE / "eu_rates.json").read_text())
    assert set(data["rates"]) == EU_MEMBER_STATES
    for rows in data["rates"].values():
        for row in rows:
            assert row["source"].startswith("https://")
            assert isinstance(row["standard"], str)  # never a float


def test_a_table_refuses_a_rate_without_a_source():
    with pytest.raises(ValueError, match="source"):
        table_from_data(
            {"FR": [{"effective_from": "2021-01-01", "standard": "20"}]}, key="standard"
        )

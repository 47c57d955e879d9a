"""Reading a rate file for `manage.py tax_rates_load` (pure): every bad entry is named by its
place in the file with the reason, and a table with a new dated entry changes the decision for
supplies from that date only."""

import json
from datetime import date
from decimal import Decimal

import pytest

from plans.tax import BuyerTax, SellerTax, Treatment, invoice_tax, tax_decide
from plans.tax.rate_file import EU_VAT, US_STATE, rate_file_read
from plans.tax.rates import HERE, RateEntry, RateTable, eu_rates

FR_SELLER = SellerTax(country="FR", vat_id="FR11123456782", oss_registered=True)


def entry(**fields):
    return {"effective_from": "2027-01-01", "standard": "21", "source": "Loi de finances"} | fields


@pytest.mark.parametrize("name, kind, count", [("eu", EU_VAT, 35), ("us", US_STATE, 1)])
def test_the_packaged_files_read_without_a_problem(name, kind, count):
    entries, problems = rate_file_read(json.loads((HERE / f"{name}_rates.json").read_text()))
    assert problems == ()
    assert len(entries) == count
    assert {e.kind for e in entries} == {kind}


@pytest.mark.parametrize(
    "code, row, problem",
    [
        ("FR", entry(standard="abc"), "rates.FR[1]: the rate 'abc' is not a number"),
        ("FR", entry(standard=21), 'rates.FR[1]: the rate is written as a string, e.g. "25.5"'),
        ("FR", entry(standard="100"), "rates.FR[1]: the rate 100 is not a percentage"),
        ("FR", entry(standard="-1"), "rates.FR[1]: the rate -1 is not a percentage"),
        ("FR", entry(standard="20.1234"), "rates.FR[1]: the rate 20.1234 has more than 3"),
        ("FR", entry(effective_from="2027-02-30"), "rates.FR[1]: effective_from '2027-02-30' is"),
        ("FR", entry(effective_from="20270101"), "rates.FR[1]: effective_from '20270101' is"),
        ("FR", entry(source=" "), "rates.FR[1]: the source is missing"),
        ("FR", {"effective_from": "2027-01-01", "source": "x"}, 'rates.FR[1]: give either "st'),
        ("FR", entry(effective_from="2026-01-01"), "rates.FR[1]: a second rate from 2026-01-01"),
        ("GB", entry(), "rates.GB[0]: 'GB' is not an EU member state"),
        ("fr", entry(), "rates.fr[0]: 'fr' is not an EU member state"),
        (
            "XX",
            {"effective_from": "2027-01-01", "rate": "5", "source": "x"},
            "rates.XX[0]: 'XX' is not a US state",
        ),
    ],
)
def test_each_bad_entry_is_named_with_its_place_and_reason(code, row, problem):
    # FR has a good entry first: the bad one is FR[1]; another place's is its [0].
    data = {"rates": {"FR": [entry(effective_from="2026-01-01")]}}
    data["rates"].setdefault(code, []).append(row)
    _, problems = rate_file_read(data)
    assert len(problems) == 1
    assert problems[0].startswith(problem)


def test_all_the_problems_of_a_file_are_listed_at_once():
    data = {
        "rates": {
            "DE": [entry(), entry(effective_from="2027-07-01", source="")],
            "TX": [{"effective_from": "2027-01-01", "rate": "6.25", "source": "TX Tax Code"}],
            "IT": [entry(standard="22,5")],
        }
    }
    entries, problems = rate_file_read(data)
    assert problems == (
        "rates.DE[1]: the source is missing: every rate names where it comes from",
        "rates.IT[0]: the rate '22,5' is not a number",
    )
    # DE is Germany for a standard rate and Delaware for a state rate: the key says which.
    assert [(e.kind, e.code, e.where) for e in entries] == [
        (EU_VAT, "DE", "rates.DE[0]"),
        (US_STATE, "TX", "rates.TX[0]"),
    ]


def test_a_file_without_rates_is_refused():
    assert rate_file_read({"what": "nothing"}) == (
        (),
        ('the file has no "rates" object of places and their entries',),
    )


def test_an_eu_table_given_to_the_decision_is_read_for_every_eu_rate():
    # FR at 21 % from 2027-01-01 (made up for the test), DE as packaged.
    fr = (*eu_rates().entries["FR"], RateEntry(date(2027, 1, 1), Decimal("21"), "test"))
    table = RateTable(entries={**eu_rates().entries, "FR": fr})
    seller_no_oss = SellerTax(country="FR", vat_id="FR11123456782", oss_registered=False)

    def total(buyer, on, seller=FR_SELLER):
        decision = tax_decide(
            seller=seller, buyer=buyer, channel="stripe", supplied_on=on, eu_rate_table=table
        )
        return decision.treatment, invoice_tax(
            decision=decision, amounts_minor=[10_000]
        ).total_minor

    # 100.00 EUR: FR VAT 20 % until Dec 31, 21 % from Jan 1, for a French buyer and for a
    # German consumer of a seller under the OSS threshold (both the seller's rate).
    assert total(BuyerTax(country="FR"), date(2026, 12, 31)) == (Treatment.DOMESTIC, 12_000)
    assert total(BuyerTax(country="FR"), date(2027, 1, 1)) == (Treatment.DOMESTIC, 12_100)
    assert total(BuyerTax(country="DE"), date(2027, 1, 1), seller_no_oss) == (
        Treatment.DOMESTIC,
        12_100,
    )
    # OSS reads the buyer's country in the same table: DE unchanged at 19 %.
    assert total(BuyerTax(country="DE"), date(2027, 1, 1)) == (Treatment.OSS, 11_900)

"""The versioned rate table (plans.TaxRateEntry) and `manage.py tax_rates_load` (issue 25,
item 3): seeded from the packaged files; a load adds new dated entries, skips those already
there, refuses a change unless corrected with a reason (audited) and refuses a bad file whole;
the decision reads the table, so a new entry taxes supplies from its date only."""

import json
from datetime import date
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import AuditEntry
from billing.tax_checks import seller_problems
from plans.models import TaxRateEntry
from plans.selectors import tax_rate_tables
from plans.tax import BuyerTax, SellerTax, Treatment, invoice_tax, tax_decide
from plans.tax.rate_file import rate_file_read
from plans.tax.rates import HERE, eu_rates, us_rates

pytestmark = pytest.mark.django_db

FR_SELLER = SellerTax(
    country="FR", vat_id="FR11123456782", oss_registered=True, us_states=frozenset({"WA"})
)
LAW = "Loi de finances 2027 (made up for the test)"


def rate_file(tmp_path, rates, name="update.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"rates": rates}))
    return str(path)


def load(*args):
    """Run the command; its output."""
    out = StringIO()
    call_command("tax_rates_load", *args, stdout=out)
    return out.getvalue()


def rows():
    return list(
        TaxRateEntry.objects.values_list("kind", "code", "effective_from", "rate", "source")
    )


def fr(rate, on="2027-01-01", source=LAW):
    return {"FR": [{"effective_from": on, "standard": rate, "source": source}]}


def test_the_seed_is_the_packaged_files():
    expected = []
    for name in ("eu_rates.json", "us_rates.json"):
        entries, problems = rate_file_read(json.loads((HERE / name).read_text()))
        assert problems == ()
        expected += [(e.kind, e.code, e.effective_from, e.rate, e.source, e.note) for e in entries]
    seeded = TaxRateEntry.objects.values_list(
        "kind", "code", "effective_from", "rate", "source", "note"
    )
    assert sorted(seeded) == sorted(expected)
    # And the tables built from it are the packaged ones, rates written alike (20, not 20.000).
    assert tax_rate_tables() == (eu_rates(), us_rates())


def test_with_no_file_the_packaged_files_are_loaded_and_are_already_there():
    before = rows()
    out = load()
    assert "already loaded: FR VAT 20 % from 2021-01-01" in out
    assert "already loaded: WA sales tax 6.5 % from 2025-01-01" in out
    assert out.strip().endswith("0 loaded, 36 already loaded, 0 corrected.")
    assert rows() == before


def test_a_new_dated_entry_is_loaded_once_and_audited(tmp_path):
    path = rate_file(tmp_path, fr("21"))
    out = load(path)
    assert f"loaded: FR VAT 21 % from 2027-01-01 ({LAW})" in out
    assert "1 loaded, 0 already loaded, 0 corrected." in out
    row = TaxRateEntry.objects.get(code="FR", effective_from=date(2027, 1, 1))
    assert (row.kind, row.rate, row.source) == ("eu_vat", Decimal("21"), LAW)
    audit = AuditEntry.objects.get(action="tax_rate.load")
    assert (audit.object_id, audit.object_label) == (row.pk, "FR from 2027-01-01")
    assert audit.after["rate"] == "21"

    # Loaded again: skipped, said so, nothing written.
    out = load(path)
    assert "already loaded: FR VAT 21 % from 2027-01-01" in out
    assert "0 loaded, 1 already loaded, 0 corrected." in out
    assert TaxRateEntry.objects.filter(code="FR").count() == 2
    assert AuditEntry.objects.filter(action__startswith="tax_rate.").count() == 1


def test_a_change_of_a_loaded_entry_is_refused_and_nothing_of_the_file_is_loaded(tmp_path):
    before = rows()
    rates = fr("19.6", on="2021-01-01") | {
        "DE": [{"effective_from": "2027-01-01", "standard": "20", "source": LAW}]
    }
    with pytest.raises(CommandError) as refused:
        load(rate_file(tmp_path, rates))
    assert str(refused.value) == (
        "Nothing loaded:\n"
        "update.json rates.FR[0]: FR from 2021-01-01 is already loaded at 20 % "
        "(https://github.com/ibericode/vat-rates/blob/master/vat-rates.json); a new rate is "
        "a new dated entry, and a correction of this one takes --correct with the reason"
    )
    assert rows() == before  # DE's new entry was not loaded either
    assert not AuditEntry.objects.filter(action__startswith="tax_rate.").exists()


def test_a_correction_takes_a_reason_and_is_audited_as_it_was_and_is(tmp_path):
    load(rate_file(tmp_path, fr("21")))
    path = rate_file(tmp_path, fr("21.5", source=LAW + ", art. 2"), name="fix.json")
    with pytest.raises(CommandError, match="Say why: --correct takes the reason"):
        load(path, "--correct", " ")

    out = load(path, "--correct", "Typo in the first load: the law says 21.5 %")
    assert f"corrected: FR VAT 21.5 % from 2027-01-01 ({LAW}, art. 2)" in out
    row = TaxRateEntry.objects.get(code="FR", effective_from=date(2027, 1, 1))
    assert row.rate == Decimal("21.5")
    audit = AuditEntry.objects.get(action="tax_rate.correct")
    assert audit.reason == "Typo in the first load: the law says 21.5 %"
    assert (audit.before["rate"], audit.after["rate"]) == ("21", "21.5")
    assert audit.after["source"] == f"{LAW}, art. 2"


def test_a_bad_file_is_refused_whole_with_each_entry_and_reason(tmp_path):
    before = rows()
    rates = {
        "FR": [
            {"effective_from": "2027-01-01", "standard": "21", "source": LAW},
            {"effective_from": "2027-07-01", "standard": "21", "source": ""},
        ],
        "UK": [{"effective_from": "2027-01-01", "standard": "20", "source": "HMRC"}],
        "TX": [{"effective_from": "2027-01-01", "rate": "6.25", "source": "Tex. Tax Code"}],
        "WA": [{"effective_from": "01/01/2027", "rate": "6.5", "source": "RCW"}],
    }
    with pytest.raises(CommandError) as refused:
        load(rate_file(tmp_path, rates))
    assert str(refused.value).splitlines() == [
        "Nothing loaded:",
        "update.json rates.FR[1]: the source is missing: every rate names where it comes from",
        "update.json rates.UK[0]: 'UK' is not an EU member state (two capital letters)",
        "update.json rates.WA[0]: effective_from '01/01/2027' is not a date (YYYY-MM-DD)",
    ]
    assert rows() == before  # not even FR[0] or TX, which were fine


def test_a_file_that_is_not_json_is_refused(tmp_path):
    path = tmp_path / "rates.json"
    path.write_text("{'rates': {}}")
    with pytest.raises(CommandError, match=r"rates.json: not JSON \(Expecting property name"):
        load(str(path))


def test_a_new_entry_taxes_supplies_from_its_date_only(tmp_path):
    load(
        rate_file(
            tmp_path,
            fr("21")
            | {"WA": [{"effective_from": "2027-01-01", "rate": "7", "source": "RCW (test)"}]},
        )
    )
    eu, us = tax_rate_tables()

    def charged(buyer, on):
        decision = tax_decide(
            seller=FR_SELLER,
            buyer=buyer,
            channel="stripe",
            supplied_on=on,
            eu_rate_table=eu,
            us_rate_table=us,
        )
        breakdown = invoice_tax(decision=decision, amounts_minor=[4_900, 1_234])
        return decision.treatment, decision.rate.label, breakdown.total_minor

    before, after = date(2026, 12, 31), date(2027, 1, 1)
    france, washington = BuyerTax(country="FR"), BuyerTax(country="US", us_state="WA")
    # 49.00 + 12.34 = 61.34: at 20 % 73.61, at 21 % 74.22 (12.8814 -> 12.88).
    assert charged(france, before) == (Treatment.DOMESTIC, "VAT FR 20 %", 7_361)
    assert charged(france, after) == (Treatment.DOMESTIC, "VAT FR 21 %", 7_422)
    # WA: 6.5 % -> 65.33 until Dec 31; 7 % from Jan 1 -> 65.63 (4.2938 -> 4.29).
    assert charged(washington, before) == (Treatment.US_SALES_TAX, "WA sales tax 6.5 %", 6_533)
    assert charged(washington, after) == (Treatment.US_SALES_TAX, "WA sales tax 7 %", 6_563)
    # Other countries keep their rates: DE by OSS, 19 % -> 72.99.
    assert charged(BuyerTax(country="DE"), after) == (Treatment.OSS, "VAT DE 19 %", 7_299)


def test_the_seller_check_reads_the_loaded_table_when_given_the_database(settings, tmp_path):
    settings.TAX_SELLER_US_STATES = ["WA", "TX"]
    missing = "TAX_SELLER_US_STATES names TX, which has no rate in force in the tax rate table"
    assert [p for p in seller_problems(databases=["default"]) if p.startswith(missing)]

    load(
        rate_file(
            tmp_path,
            {
                "TX": [
                    {
                        "effective_from": "2021-01-01",
                        "rate": "6.25",
                        "source": "Tex. Tax Code 151.051",
                    }
                ]
            },
        )
    )
    assert seller_problems(databases=["default"]) == []
    # Without a database (`check`, `runserver`) the packaged file is read: TX is not in it.
    assert seller_problems() == [
        "TAX_SELLER_US_STATES names TX, which has no rate in force in plans/tax/us_rates.json: "
        "add it (with its source) or remove the state."
    ]

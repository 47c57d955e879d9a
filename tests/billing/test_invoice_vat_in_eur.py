"""VAT stated in euros on invoices in another currency (Article 230 of Directive 2006/112/EC;
docs/tax.md "VAT in euros", docs/pricing.md): frozen at issue with the ECB rate used and its
date, for VAT charged by the (French) seller; credit notes at their invoice's rate; printed on
the PDF and the Invoices tab, carried by the API and the webhooks.

The seller is the demo's (FR, OSS, registered in WA). Issued at T0, Sunday 2026-11-01: the
latest ECB rate is Friday's."""

import logging
from datetime import date
from decimal import Decimal

import pytest

from billing import invoicing, tax_corrections
from billing.models import Invoice
from outbox.models import Event
from plans.exchange_rates import ecb_rates_load
from plans.models import ExchangeRate
from plans.tax.national import EcbRate
from tests.billing.test_invoice_documents import endpoint, invoices_page, text_of  # noqa: F401
from tests.billing.test_invoice_tax import DE_VALID_VAT, buyer, issue
from tests.billing.test_statement import DAY, T0

pytestmark = pytest.mark.usefixtures("eu_seller")

FRIDAY = date(2026, 10, 30)
THURSDAY = date(2026, 10, 29)
SENTENCE = "VAT due in EUR: €60.61 (ECB rate 1 EUR = 1.0856 USD of 2026-10-30)"


@pytest.fixture(autouse=True)
def ecb_rates(db):
    ecb_rates_load(
        rates=[
            EcbRate("USD", Decimal("1.0849"), THURSDAY),
            EcbRate("USD", Decimal("1.0856"), FRIDAY),
        ],
        source="test",
    )


def usd_buyer(make_account, slug="acme", **identity):
    return buyer(make_account(slug=slug, currency="USD"), **({"country": "FR"} | identity))


def national(invoice: Invoice) -> dict | None:
    invoice.refresh_from_db()
    return invoice.tax_decision.get("vat_national")


# --- Frozen at issue ---------------------------------------------------------------------------


def test_a_usd_invoice_of_the_french_seller_states_its_vat_in_euros(make_account):
    invoice = issue(usd_buyer(make_account), 32900)  # $329.00 + $65.80 VAT FR 20 %
    assert (invoice.subtotal_minor, invoice.tax_minor) == (32900, 6580)
    assert national(invoice) == {
        "currency": "EUR",
        "rate": {"currency": "USD", "units_per_eur": "1.0856", "published_on": "2026-10-30"},
        "per_rate": [{"label": "VAT FR 20 %", "tax_minor": 6061}],  # 65.80 / 1.0856 = 60.61
        "tax_minor": 6061,
    }


def test_oss_vat_is_stated_in_euros_too(make_account):
    invoice = issue(usd_buyer(make_account, country="DE"), 10000)  # $100 + $19.00 VAT DE 19 %
    assert invoice.tax_treatment == "oss"
    assert national(invoice)["tax_minor"] == 1750  # 19.00 / 1.0856 = 17.5018… → 17.50


def test_a_rate_loaded_later_changes_nothing_issued(make_account):
    invoice = issue(usd_buyer(make_account), 32900)
    ecb_rates_load(rates=[EcbRate("USD", Decimal("1.2"), T0.date())], source="later")
    assert national(invoice)["rate"]["units_per_eur"] == "1.0856"


@pytest.mark.parametrize(
    ("currency", "identity"),
    [
        ("EUR", {"country": "FR"}),  # the national currency already
        ("USD", {"country": "DE", "vat_id": DE_VALID_VAT, "tax_id_status": "valid"}),  # reverse
        ("USD", {"country": "US", "us_state": "WA"}),  # US sales tax, not VAT
        ("USD", {"country": "JP"}),  # outside the EU: no VAT
    ],
)
def test_no_euros_are_stated_where_no_vat_is_charged_in_another_currency(
    make_account, currency, identity
):
    account = buyer(make_account(currency=currency), **identity)
    assert national(issue(account, 32900)) is None


def test_with_no_recent_rate_the_invoice_is_issued_and_says_so(make_account, caplog):
    ExchangeRate.objects.filter(currency="USD", published_on__gt=date(2025, 1, 1)).delete()
    # The seed's rate of 2024-06-28 is there, but it is not the latest ECB published.
    with caplog.at_level(logging.WARNING, logger="billing.taxing"):
        invoice = issue(usd_buyer(make_account), 32900)
    assert invoice.number and invoice.tax_minor == 6580
    assert national(invoice) == {"currency": "EUR", "rate": None, "per_rate": [], "tax_minor": 0}
    assert "No ECB rate for USD on or shortly before 2026-11-01" in caplog.text
    assert "VAT in EUR: rate unavailable" in text_of(invoice)


# --- Credit notes: the invoice's rate, in proportion ------------------------------------------


def test_credit_notes_give_back_the_invoices_euros_at_its_rate(make_account):
    invoice = issue(usd_buyer(make_account), 32900)
    ecb_rates_load(rates=[EcbRate("USD", Decimal("1.2"), T0.date() + DAY)], source="later")
    first = invoicing.credit_note_issue(invoice=invoice, amount_minor=10001, description="a")
    second = invoicing.credit_note_issue(invoice=invoice, amount_minor=22899, description="b")
    # $20.00 then $45.80 of VAT back: 18.42 and 42.19 euros, 60.61 in all.
    assert (first.tax_minor, second.tax_minor) == (-2000, -4580)
    assert national(first)["tax_minor"] == -1842
    assert national(second)["tax_minor"] == -4219
    assert national(first)["rate"] == national(invoice)["rate"]
    assert national(first)["tax_minor"] + national(second)["tax_minor"] == -6061
    assert "VAT due in EUR: -€18.42 (ECB rate 1 EUR = 1.0856 USD of 2026-10-30)" in text_of(first)


def test_vat_given_back_whole_gives_back_its_euros(make_account):
    account = usd_buyer(
        make_account, country="DE", vat_id=DE_VALID_VAT, tax_id_status="unavailable"
    )
    invoice = issue(account, 10000)  # $19.00 VAT DE charged: VIES had not answered
    assert national(invoice)["tax_minor"] == 1750  # 19.00 / 1.0856 = 17.5018… → 17.50
    buyer(account, tax_id_status="valid", tax_id_checked_at=T0 + DAY, tax_id_consultation="W1")
    note = tax_corrections.vat_correction_issue(invoice=invoice, reason="VIES confirmed")
    assert national(note)["tax_minor"] == -1750
    assert national(note)["rate"] == national(invoice)["rate"]


# --- Printed and carried -----------------------------------------------------------------------


def test_the_pdf_prints_the_vat_in_euros_under_the_total_tax(make_account):
    text = text_of(issue(usd_buyer(make_account), 32900))
    assert "Total tax $65.80" in text
    assert SENTENCE in text


def test_the_invoices_page_shows_the_vat_in_euros(client, django_user_model, make_account):
    account = usd_buyer(make_account, slug="acme")
    issue(account, 32900)
    page = invoices_page(client, django_user_model, account)
    assert f'<p class="muted tax-national">{SENTENCE}</p>' in page


def test_the_api_and_the_webhook_carry_the_vat_in_euros(
    partner_api,
    make_account,
    endpoint,  # noqa: F811
):
    invoice = issue(usd_buyer(make_account), 32900)
    expected = {
        "tax_total": {"amount": 6061, "currency": "EUR"},
        "tax": [{"label": "VAT FR 20 %", "tax_amount": {"amount": 6061, "currency": "EUR"}}],
        "exchange_rate": {
            "source": "ECB",
            "currency": "USD",
            "units_per_eur": "1.0856",
            "published_on": "2026-10-30",
        },
    }
    assert partner_api.get(f"/api/v1/invoices/{invoice.pk}").json()["vat_in_eur"] == expected
    (finalized,) = Event.objects.filter(type="invoice.finalized", account=invoice.account)
    assert finalized.data["invoice"]["vat_in_eur"] == expected
    eur = buyer(make_account(slug="euro", currency="EUR"), country="FR")
    assert partner_api.get(f"/api/v1/invoices/{issue(eur, 100).pk}").json()["vat_in_eur"] is None


def test_the_schema_declares_the_vat_in_euros(client, db):
    schemas = client.get("/api/schema/?format=json").json()["components"]["schemas"]
    for name in ("InvoiceSummaryOut", "InvoiceOut"):
        assert "vat_in_eur" in schemas[name]["properties"]
        assert "vat_in_eur" in schemas[name]["required"]
    assert set(schemas["VatInEurOut"]["properties"]) == {"tax_total", "tax", "exchange_rate"}
    assert set(schemas["EcbRateOut"]["properties"]) == {
        "source",
        "currency",
        "units_per_eur",
        "published_on",
    }

"""The operator's view of the buyer's tax identity (issue 25, item 7): the account page shows the
country, the US state, the VAT id and what VIES said of it, with the date; the queue shows
each account's VAT id status and filters by it."""

import html
from datetime import UTC, datetime

import pytest

from accounts.models import Account, TaxIdStatus
from console import selectors
from tests.console.test_pages import unpaid

pytestmark = pytest.mark.django_db

CHECKED = datetime(2026, 11, 16, 9, 30, tzinfo=UTC)


def tax_identity(account, **fields) -> Account:
    Account.objects.filter(pk=account.pk).update(**fields)
    account.refresh_from_db()
    return account


def page(client, account) -> str:
    return html.unescape(client.get(f"/console/accounts/{account.pk}/").content.decode())


def test_the_account_page_shows_a_vat_id_vies_confirmed(ops, make_account):
    account = tax_identity(
        make_account(slug="beispiel", currency="EUR"),
        company="Beispiel Support GmbH",
        country="DE",
        vat_id="DE123456788",
        tax_id_status=TaxIdStatus.VALID,
        tax_id_checked_at=CHECKED,
        tax_id_consultation="WAPIAAAAZ1",
        tax_id_name="Beispiel Support GmbH",
    )
    text = page(ops, account)
    assert 'data-tax-id-status="valid"' in text
    assert "DE123456788" in text
    assert "Confirmed by VIES on Nov 16, 2026, consultation number WAPIAAAAZ1." in text
    assert "answer of Nov 16, 2026 09:30 UTC" in text


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (TaxIdStatus.PENDING, "Checking with the EU's VIES service…"),
        (TaxIdStatus.INVALID, "VIES says this VAT id is not valid"),
        (TaxIdStatus.UNAVAILABLE, "VIES could not be reached: VAT is charged until it confirms"),
    ],
)
def test_the_account_page_says_what_vies_said(ops, make_account, status, says):
    account = tax_identity(
        make_account(slug="beispiel", currency="EUR"),
        country="DE",
        vat_id="DE111222339",
        tax_id_status=status,
    )
    text = page(ops, account)
    assert f'data-tax-id-status="{status}"' in text
    assert says in text


def test_the_account_page_shows_the_us_state(ops, make_account):
    account = tax_identity(make_account(slug="acme"), country="US", us_state="WA")
    text = page(ops, account)
    assert "<dt>US state</dt><dd>WA</dd>" in text
    assert "data-tax-id-status" not in text  # no VAT id: no status to show


def test_the_queue_filters_by_vat_id_status_and_shows_it(ops, make_account):
    valid = tax_identity(
        make_account(slug="alpha", currency="EUR"),
        country="DE",
        vat_id="DE123456788",
        tax_id_status=TaxIdStatus.VALID,
    )
    unavailable = tax_identity(
        make_account(slug="bravo", currency="EUR"),
        country="DE",
        vat_id="DE111222339",
        tax_id_status=TaxIdStatus.UNAVAILABLE,
    )
    without = make_account(slug="charlie")  # no VAT id: `unchecked`, never listed as such
    unpaid(valid, "A1", 100_00, 10)
    unpaid(unavailable, "B1", 200_00, 10)
    unpaid(without, "C1", 300_00, 10)

    def listed(status: str) -> list[str]:
        found = selectors.attention_queue(
            filters={"tax_id_status": status}, page=1, now=datetime.now(UTC)
        )
        return sorted(row.invoice.number for row in found.object_list)

    assert listed("") == ["A1", "B1", "C1"]
    assert listed("unavailable") == ["B1"]
    assert listed("valid") == ["A1"]
    assert listed("unchecked") == []

    text = html.unescape(ops.get("/console/?tax_id_status=unavailable").content.decode())
    assert "bravo · Acme Partners · VAT id unavailable" in text
    assert "alpha" not in text

"""VAT ids checked offline with python-stdnum (accounts.vat): format, prefix and check digits,
refused in words a merchant can act on; and the billing details form using it."""

import pytest

from accounts.vat import vat_id_check_offline, vat_id_compact, vat_id_country
from billing.pages.forms import BillingDetailsForm


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("FR11123456782", "FR11123456782"),
        ("fr 11-123.456.782", "FR11123456782"),
        ("DE 123 456 788", "DE123456788"),
        ("el094259216", "EL094259216"),  # Greece writes EL
    ],
)
def test_a_valid_id_is_accepted_and_stored_compact(typed, stored):
    check = vat_id_check_offline(typed)
    assert check.is_valid
    assert check.vat_id == stored


@pytest.mark.parametrize(
    ("typed", "words"),
    [
        ("DE123456789", "check digits do not match"),
        ("DE12345678", "wrong number of characters for DE"),
        ("XX123456789", "does not start with an EU country prefix"),
        ("", "Type the VAT id"),
    ],
)
def test_an_invalid_id_is_refused_with_the_reason(typed, words):
    check = vat_id_check_offline(typed)
    assert not check.is_valid
    assert words in check.problem


def test_the_prefix_must_be_the_buyers_country():
    # django-plans #127: an id typed without its prefix passed and failed VIES for ever.
    assert vat_id_check_offline("123456788", country="DE").problem == (
        "A VAT id from DE starts with DE."
    )
    assert vat_id_check_offline("EL094259216", country="GR").is_valid
    assert vat_id_check_offline("FR11123456782", country="DE").problem == (
        "A VAT id from DE starts with DE."
    )


def test_country_of_an_id_and_compact_form():
    assert vat_id_country("EL094259216") == "GR"
    assert vat_id_country("de123456788") == "DE"
    assert vat_id_country("GB980780684") == ""  # not an EU id
    assert vat_id_compact(" fr 11.123-456/782 ") == "FR11123456782"


def details(**fields):
    data = {"billing_email": "billing@shop.example", **fields}
    return BillingDetailsForm(data=data)


def test_the_details_form_refuses_a_mistyped_eu_id_at_once():
    form = details(country="DE", vat_id="DE 123 456 789")
    assert not form.is_valid()
    assert "check digits do not match" in form.errors["vat_id"][0]


def test_the_details_form_takes_a_valid_eu_id_compact():
    form = details(country="DE", vat_id="de 123 456 788")
    assert form.is_valid(), form.errors
    assert form.cleaned_data["vat_id"] == "DE123456788"


def test_the_details_form_leaves_non_eu_ids_to_their_format_rule():
    # A UK id: not an EU VAT id, python-stdnum's EU check does not apply.
    form = details(country="GB", vat_id="GB980780684")
    assert form.is_valid(), form.errors

"""Input at the edge on the merchant's pages (issue 22, item 6): the billing details form
refuses control, bidi and invisible characters and names the one at fault; countries are ISO
codes (typed in lower case, upper-cased); any case of the slug leads to the page's one address."""

import pytest

from accounts.models import Account
from tests.billing.pages_fixtures import account  # noqa: F401  (fixture)


@pytest.fixture
def logged_in(client, owner):
    client.force_login(owner)
    return client


def details(**overrides) -> dict:
    form = {
        "billing_email": "billing@shop.example",
        "company": "Shop SAS",
        "address_line1": "1 rue de la Paix",
        "address_line2": "",
        "postal_code": "75002",
        "city": "Paris",
        "country": "FR",
        "vat_id": "",
        "form_token": "t1",
    }
    return form | overrides


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("company", "Shop\u202eSAS", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
        ("company", "\x1b[2JShop", "U+001B (a control character)"),
        ("address_line1", "1 rue\u2067 de la Paix", "U+2067 (RIGHT-TO-LEFT ISOLATE)"),
        ("address_line2", "Bât. B\nEscalier 2", "U+000A (a control character)"),
        ("postal_code", "750\u200b02", "U+200B (ZERO WIDTH SPACE)"),
        ("city", "\ufeffParis", "U+FEFF (ZERO WIDTH NO-BREAK SPACE)"),
    ],
)
def test_billing_details_refuse_hidden_characters_naming_field_and_character(
    logged_in, field, value, named
):
    response = logged_in.post("/billing/shop/details/save", details(**{field: value}))
    assert response.status_code == 400
    page = response.content.decode()
    assert named in page
    assert f'name="{field}"' in page  # the form comes back with the field to fix
    assert Account.objects.get(slug="shop").company == ""  # nothing saved


def test_billing_details_in_any_script_are_saved(logged_in):
    form = details(company="Ünal & Söhne GmbH", city="Zürich", country="ch")
    response = logged_in.post("/billing/shop/details/save", form, follow=True)
    assert "Billing details saved" in response.content.decode()
    shop = Account.objects.get(slug="shop")
    assert (shop.company, shop.city, shop.country) == ("Ünal & Söhne GmbH", "Zürich", "CH")


@pytest.mark.parametrize(
    ("country", "says"),
    [
        ("xk", "“XK” is a user-assigned code, not a country"),
        ("ää", "“ÄÄ” is not an ISO 3166-1 alpha-2 country code"),
    ],
)
def test_a_country_that_is_not_an_iso_code_is_refused_on_the_page(logged_in, country, says):
    response = logged_in.post("/billing/shop/details/save", details(country=country))
    assert response.status_code == 400
    assert says in response.content.decode()
    assert Account.objects.get(slug="shop").country == ""


def test_any_case_of_the_slug_is_sent_to_the_lower_case_address(logged_in):
    response = logged_in.get("/billing/SHOP/usage/?period=2026-11")
    assert response.status_code == 301
    assert response["Location"] == "/billing/shop/usage/?period=2026-11"
    assert logged_in.get(response["Location"]).status_code == 200


def test_the_redirect_tells_an_outsider_nothing(account, outsider, client):  # noqa: F811
    client.force_login(outsider)
    for slug in ("Shop", "Nowhere"):
        response = client.get(f"/billing/{slug}/")
        assert response.status_code == 301 and response["Location"] == f"/billing/{slug.lower()}/"
        assert client.get(response["Location"]).status_code == 404

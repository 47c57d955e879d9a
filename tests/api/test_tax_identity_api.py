"""The buyer's tax identity through the partner API (issue 25, item 2): `us_state` in, the VIES
evidence out (`tax_id_status`, `tax_id_checked_at`, `tax_id_consultation`); a new or changed
VAT id is `pending` and checked with VIES after the commit; bad input is a field error."""

from datetime import UTC, datetime

import pytest
import time_machine

from accounts.models import Account
from audit.models import AuditEntry

AT = datetime(2026, 11, 22, 12, tzinfo=UTC)
REGISTERED = "DE123456788"  # the stand-in's "Beispiel Support GmbH"
NOT_REGISTERED = "DE111222339"


def new_account(**overrides) -> dict:
    body = {
        "slug": "bloom",
        "name": "Bloom Cosmetics",
        "billing_email": "billing@bloom.example",
        "currency": "EUR",
        "plan": "pro",
        "interval": "month",
    }
    return body | overrides


def patch(client, capture, body: dict, slug: str = "shop"):
    """PATCH the details and run what was queued for after the commit (the VIES check)."""
    with time_machine.travel(AT, tick=False), capture(execute=True) as queued:
        response = client.patch(f"/api/v1/accounts/{slug}", body, format="json")
    return response, queued


def test_a_new_account_with_an_eu_vat_id_is_checked_with_vies(
    partner_api, catalog, vies_standin, eu_seller, django_capture_on_commit_callbacks
):
    body = new_account(company="Beispiel Support GmbH", country="DE", vat_id="de 123 456 788")
    with time_machine.travel(AT, tick=False), django_capture_on_commit_callbacks(execute=True):
        response = partner_api.post("/api/v1/accounts", body, format="json")
    assert response.status_code == 201, response.json()
    # The answer given at creation is written before VIES answers...
    assert response.json()["vat_id"] == REGISTERED
    assert response.json()["tax_id_status"] == "pending"
    # ... and VIES's answer is there at the next read.
    body = partner_api.get("/api/v1/accounts/bloom").json()
    assert body["tax_id_status"] == "valid"
    assert body["tax_id_checked_at"] == "2026-11-22T12:00:00Z"
    assert body["tax_id_consultation"].startswith("WAPIAAAA")
    assert Account.objects.get(slug="bloom").tax_id_name == "Beispiel Support GmbH"


def test_a_us_account_is_created_with_its_state(partner_api, catalog):
    response = partner_api.post(
        "/api/v1/accounts", new_account(currency="USD", country="US", us_state="WA"), format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["country"], body["us_state"], body["tax_id_status"]) == ("US", "WA", "unchecked")
    assert body["tax_id_checked_at"] is None and body["tax_id_consultation"] == ""


@pytest.mark.parametrize(
    ("overrides", "field", "says"),
    [
        ({"country": "US"}, "us_state", "Give the US state"),
        ({"country": "US", "us_state": "wa"}, "us_state", "“wa” is not a US state"),
        ({"country": "FR", "us_state": "WA"}, "us_state", "goes with the country US only"),
        ({"country": "DE", "vat_id": "DE123456789"}, "vat_id", "check digits do not match"),
        ({"country": "DE", "vat_id": "FR11123456782"}, "vat_id", "starts with DE"),
        ({"vat_id": REGISTERED}, "country", "Give the country that goes with the VAT id"),
    ],
)
def test_account_creation_refuses_a_bad_tax_identity_by_field(
    partner_api, catalog, overrides, field, says
):
    response = partner_api.post("/api/v1/accounts", new_account(**overrides), format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert says in error["details"]["fields"][field][0]
    assert not Account.objects.filter(slug="bloom").exists()


def test_patch_round_trip_of_the_details_and_a_changed_vat_id(
    account, account_api, vies_standin, django_capture_on_commit_callbacks
):
    details = {
        "company": "Beispiel Support GmbH",
        "address_line1": "Musterstraße 1",
        "postal_code": "10115",
        "city": "Berlin",
        "country": "DE",
        "vat_id": "DE 123 456 788",
    }
    response, queued = patch(account_api, django_capture_on_commit_callbacks, details)
    assert response.status_code == 200, response.json()
    assert len(queued) == 1
    body = response.json()
    assert {k: body[k] for k in details} == details | {"vat_id": REGISTERED}
    assert body["tax_id_status"] == "pending"  # as written, before the check ran
    assert account_api.get("/api/v1/accounts/shop").json()["tax_id_status"] == "valid"

    # Another id: the old answer is forgotten, VIES asked again; it does not know this one.
    response, queued = patch(
        account_api, django_capture_on_commit_callbacks, {"vat_id": NOT_REGISTERED}
    )
    assert response.json()["tax_id_checked_at"] is None
    body = account_api.get("/api/v1/accounts/shop").json()
    assert (body["tax_id_status"], body["tax_id_checked_at"]) == ("invalid", "2026-11-22T12:00:00Z")
    # The city alone: nothing asked of VIES, its answer stands.
    response, queued = patch(account_api, django_capture_on_commit_callbacks, {"city": "Potsdam"})
    assert (response.json()["city"], response.json()["tax_id_status"]) == ("Potsdam", "invalid")
    assert queued == []
    # Every change is audited, naming the partner's key.
    assert AuditEntry.objects.filter(action="account.billing_details").count() == 3


def test_patch_moves_a_buyer_to_the_us_with_its_state_and_zip(
    account, account_api, django_capture_on_commit_callbacks
):
    body = {"country": "US", "us_state": "NY", "postal_code": "10001-1234", "city": "New York"}
    response, queued = patch(account_api, django_capture_on_commit_callbacks, body)
    assert response.status_code == 200, response.json()
    assert (response.json()["us_state"], response.json()["postal_code"]) == ("NY", "10001-1234")
    assert queued == []


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"country": "US"}, "us_state", "Give the US state"),
        ({"country": "US", "us_state": "PR"}, "us_state", "“PR” is not a US state"),
        ({"country": "US", "us_state": "WA", "postal_code": "981"}, "postal_code", "5 digits"),
        ({"us_state": "WA"}, "us_state", "goes with the country US only"),
        ({"country": "DE", "vat_id": "DE12345678"}, "vat_id", "wrong number of characters"),
        ({"vat_id": 123}, "vat_id", "Not a valid string"),
        ({"country": "de"}, "country", "Country codes are upper case"),
        ({"company": "Shop\u202eSAS"}, "company", "U+202E"),
    ],
)
def test_patch_refuses_bad_details_by_field_and_changes_nothing(
    account, account_api, django_capture_on_commit_callbacks, body, field, says
):
    response, queued = patch(account_api, django_capture_on_commit_callbacks, body)
    assert response.status_code == 400, response.json()
    assert says in response.json()["error"]["details"]["fields"][field][0]
    assert queued == []
    account.refresh_from_db()
    assert (account.country, account.us_state, account.vat_id, account.company) == ("", "", "", "")


def test_another_partners_key_cannot_patch(account, other_partner_api):
    response = other_partner_api.patch("/api/v1/accounts/shop", {"city": "X"}, format="json")
    assert response.status_code == 404


def test_the_schema_documents_the_tax_identity(client, catalog):
    schema = client.get("/api/schema/?format=json").json()
    account_out = schema["components"]["schemas"]["AccountOut"]["properties"]
    assert {"us_state", "tax_id_status", "tax_id_checked_at", "tax_id_consultation"} <= set(
        account_out
    )
    assert "us_state" in schema["components"]["schemas"]["AccountCreateInRequest"]["properties"]
    patch_op = schema["paths"]["/api/v1/accounts/{slug}"]["patch"]
    assert patch_op["operationId"] == "accounts_details_update"

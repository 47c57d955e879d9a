"""The buyer's tax identity on the merchant's billing details (issue 25, item 2): legal name,
address, country, US state and ZIP, VAT id. The form refuses what cannot be right at once; a
changed VAT id waits for VIES (`pending`) and the check, queued after the commit, stores what
the stand-in answers (valid, invalid, unavailable); the page says it in plain words."""

import html
import uuid
from datetime import UTC, datetime

import pytest
import time_machine

from accounts.models import Account, TaxIdStatus
from accounts.tax_identity import US_STATES
from audit.models import AuditEntry
from billing.tax_checks import vat_id_check_task

AT = datetime(2026, 11, 16, 9, 30, tzinfo=UTC)
REGISTERED = "DE123456788"  # the stand-in's "Beispiel Support GmbH"
NOT_REGISTERED = "DE111222339"  # check digits right, unknown to VIES


@pytest.fixture
def logged_in(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def worker_retries(monkeypatch):
    """The task's retries run one after the other, as a worker's would (see test_vies.py)."""
    monkeypatch.setitem(vat_id_check_task.app.conf, "CELERY_TASK_EAGER_PROPAGATES", False)


def details(**overrides) -> dict:
    form = {
        "billing_email": "billing@shop.example",
        "company": "Beispiel Support GmbH",
        "address_line1": "Musterstraße 1",
        "address_line2": "",
        "postal_code": "10115",
        "city": "Berlin",
        "country": "DE",
        "us_state": "",
        "vat_id": "",
        "form_token": uuid.uuid4().hex,  # each post its own (a repeated one is "already done")
    }
    return form | overrides


def save(client, capture, **overrides):
    """Post the form and run what was queued for after the commit (the VIES check)."""
    with time_machine.travel(AT, tick=False), capture(execute=True) as queued:
        response = client.post("/billing/shop/details/save", details(**overrides), follow=True)
    return response, queued


def details_page(client) -> str:
    return html.unescape(client.get("/billing/shop/details/").content.decode())


def shop() -> Account:
    return Account.objects.get(slug="shop")


# --- what the form refuses at once -----------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field", "says"),
    [
        ({"country": "US", "postal_code": "98101"}, "us_state", "Give the US state, e.g. WA"),
        (
            {"country": "US", "us_state": "XY", "postal_code": "98101"},
            "us_state",
            "“XY” is not a US state",
        ),
        ({"country": "DE", "us_state": "WA"}, "us_state", "goes with the country US only"),
        (
            {"country": "US", "us_state": "WA", "postal_code": "9810"},
            "postal_code",
            "A US ZIP code is 5 digits, or ZIP+4",
        ),
        (
            {"country": "US", "us_state": "WA", "postal_code": "98101-12"},
            "postal_code",
            "A US ZIP code is 5 digits, or ZIP+4",
        ),
        ({"vat_id": "DE 123 456 789"}, "vat_id", "its check digits do not match"),
        ({"vat_id": "FR11123456782"}, "vat_id", "A VAT id from DE starts with DE."),
        ({"country": "", "vat_id": REGISTERED}, "country", "Give the country that goes with"),
    ],
)
def test_the_form_refuses_what_cannot_be_right(
    logged_in, django_capture_on_commit_callbacks, overrides, field, says
):
    response, queued = save(logged_in, django_capture_on_commit_callbacks, **overrides)
    assert response.status_code == 400
    page = response.content.decode()
    assert says in page
    assert f'name="{field}"' in page
    assert queued == []  # nothing asked of VIES
    assert (shop().company, shop().us_state, shop().vat_id) == ("", "", "")


@pytest.mark.parametrize(
    ("state", "zip_code"), [("wa", "98101"), ("NY", "10001-1234"), ("DC", "20001")]
)
def test_a_us_buyer_is_saved_with_its_state_and_zip(
    logged_in, django_capture_on_commit_callbacks, state, zip_code
):
    response, queued = save(
        logged_in,
        django_capture_on_commit_callbacks,
        company="Acme Inc",
        country="us",
        us_state=state,
        postal_code=zip_code,
        city="Seattle",
    )
    assert "Billing details saved" in response.content.decode()
    account = shop()
    assert (account.country, account.us_state, account.postal_code) == (
        "US",
        state.upper(),
        zip_code,
    )
    assert account.tax_id_status == TaxIdStatus.UNCHECKED
    assert queued == []


def test_the_us_states_are_the_fifty_and_dc():
    assert len(US_STATES) == 51
    assert {"WA", "NY", "DC"} <= US_STATES
    assert not {"PR", "GU", "XY"} & US_STATES  # territories are countries of their own


def test_the_page_names_the_legal_name_and_the_us_state(logged_in):
    page = details_page(logged_in)
    assert "Legal name" in page
    assert 'name="us_state"' in page


# --- a changed VAT id is checked with VIES ---------------------------------------------------


def test_a_registered_vat_id_is_confirmed_by_vies(
    logged_in, vies_standin, django_capture_on_commit_callbacks, eu_seller
):
    # An EU seller names itself to VIES as requester: that is what brings a consultation number.
    response, queued = save(logged_in, django_capture_on_commit_callbacks, vat_id="de123456788")
    assert len(queued) == 1
    assert "checking the VAT id with the EU" in response.content.decode()
    account = shop()
    assert account.vat_id == REGISTERED
    assert account.tax_id_status == TaxIdStatus.VALID
    assert account.tax_id_checked_at == AT
    assert account.tax_id_name == "Beispiel Support GmbH"
    assert account.tax_id_consultation.startswith("WAPIAAAA")
    page = details_page(logged_in)
    assert (
        f"Confirmed by VIES on Nov 16, 2026, consultation number {account.tax_id_consultation}."
        in page
    )


def test_an_unregistered_vat_id_is_invalid_and_the_page_says_vat_is_charged(
    logged_in, vies_standin, django_capture_on_commit_callbacks
):
    save(logged_in, django_capture_on_commit_callbacks, vat_id=NOT_REGISTERED)
    assert shop().tax_id_status == TaxIdStatus.INVALID
    page = details_page(logged_in)
    assert "VIES says this VAT id is not valid (checked on Nov 16, 2026): invoices carry VAT." in (
        page
    )


def test_vies_down_leaves_the_id_unavailable_and_the_page_says_so(
    logged_in, vies_standin, django_capture_on_commit_callbacks, worker_retries
):
    vies_standin.mode("down")
    save(logged_in, django_capture_on_commit_callbacks, vat_id=REGISTERED)
    account = shop()
    assert account.tax_id_status == TaxIdStatus.UNAVAILABLE
    assert account.tax_id_checked_at is None
    page = details_page(logged_in)
    assert "VIES could not be reached: VAT is charged until it confirms the id" in page


def test_the_details_are_saved_when_the_check_cannot_finish(
    logged_in, django_capture_on_commit_callbacks
):
    # In-process tasks (the demo, the tests) with VIES down: the check gives up raising its
    # retry, after the commit; the merchant's save stands and the id is `unavailable`.
    response, queued = save(logged_in, django_capture_on_commit_callbacks, vat_id=REGISTERED)
    assert len(queued) == 1
    assert "Billing details saved" in response.content.decode()
    assert (shop().vat_id, shop().tax_id_status) == (REGISTERED, TaxIdStatus.UNAVAILABLE)


def test_a_saved_id_waits_for_vies_until_the_check_has_run(
    logged_in, django_capture_on_commit_callbacks
):
    # The check is queued, not run: the page says VIES is being asked.
    with time_machine.travel(AT, tick=False), django_capture_on_commit_callbacks() as queued:
        logged_in.post("/billing/shop/details/save", details(vat_id=REGISTERED))
    assert len(queued) == 1
    assert shop().tax_id_status == TaxIdStatus.PENDING
    page = details_page(logged_in)
    assert "Checking with the EU's VIES service…" in page


def test_a_changed_id_forgets_the_last_answer_and_an_unchanged_one_asks_nothing(
    logged_in, vies_standin, django_capture_on_commit_callbacks
):
    save(logged_in, django_capture_on_commit_callbacks, vat_id=REGISTERED)
    assert shop().tax_id_status == TaxIdStatus.VALID
    # The same id saved again with a new address: VIES's answer stands, nothing is asked.
    _, queued = save(
        logged_in, django_capture_on_commit_callbacks, vat_id=REGISTERED, city="Potsdam"
    )
    assert queued == []
    assert shop().tax_id_status == TaxIdStatus.VALID
    # Emptied: nothing for VIES, the evidence of the old id is gone.
    _, queued = save(logged_in, django_capture_on_commit_callbacks, vat_id="")
    assert queued == []
    account = shop()
    assert (account.tax_id_status, account.tax_id_checked_at, account.tax_id_consultation) == (
        TaxIdStatus.UNCHECKED,
        None,
        "",
    )
    assert account.tax_id_name == ""
    # The audit row names what changed, the status included.
    entry = AuditEntry.objects.filter(action="account.billing_details").latest("pk")
    assert entry.before["vat_id"] == REGISTERED
    assert entry.before["tax_id_status"] == "valid"
    assert entry.after["tax_id_status"] == "unchecked"


def test_a_non_eu_vat_id_is_kept_unchecked(logged_in, django_capture_on_commit_callbacks):
    response, queued = save(
        logged_in,
        django_capture_on_commit_callbacks,
        country="GB",
        postal_code="SW1A 1AA",
        vat_id="GB980780684",
    )
    assert queued == []
    assert shop().tax_id_status == TaxIdStatus.UNCHECKED
    page = details_page(logged_in)
    assert "Not checked: VIES checks the VAT ids of EU countries only." in page

"""Every input checked at the edge (issue 22, item 6), through the partner API: dates within
the documented window, ISO countries, slugs unique whatever their case, no control or bidi
characters in names, and no events from before the account's first subscription."""

import importlib
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.apps import apps as django_apps
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from accounts import services as account_services
from accounts.models import Account
from metering.models import Event
from plans.models import Subscription
from tests.conftest import client_with_key

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def new_account(**overrides) -> dict:
    body = {
        "slug": "bloom",
        "name": "Bloom Cosmetics",
        "billing_email": "billing@bloom.example",
        "plan": "pro",
        "interval": "month",
    }
    return body | overrides


def refused(response, field: str) -> str:
    """The 400's message for `field`; the answer names the field in its summary too."""
    assert response.status_code == 400, response.content[:500]
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["message"].startswith(f"{next(iter(error['details']['fields']))}: ")
    return " ".join(error["details"]["fields"][field])


# --- dates ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "period_start",
    ["0001-01-01T00:00:00Z", "1999-12-01T00:00:00Z", "9999-12-31T23:59:59-01:00"],
)
def test_a_period_start_outside_the_window_is_a_400_naming_it_and_the_window(
    partner_api, catalog, period_start
):
    response = partner_api.post(
        "/api/v1/accounts", new_account(period_start=period_start), format="json"
    )
    message = refused(response, "period_start")
    assert "from 2000-01-01T00:00:00Z to now" in message
    assert not Account.objects.exists()


def test_a_period_start_inside_the_window_still_migrates_the_customer(partner_api, catalog):
    body = new_account(period_start="2000-01-05T00:00:00Z")
    response = partner_api.post("/api/v1/accounts", body, format="json")
    assert response.status_code == 201, response.json()
    period = response.json()["subscription"]["current_period"]
    assert period == {"start": "2026-11-05T00:00:00Z", "end": "2026-12-05T00:00:00Z"}


def account_create_schema(client) -> tuple[dict, dict]:
    """The request body's properties, and every component of the schema."""
    schema = client.get("/api/schema/", {"format": "json"}).json()
    body = schema["paths"]["/api/v1/accounts"]["post"]["requestBody"]["content"]
    ref = body["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    components = schema["components"]["schemas"]
    return components[ref]["properties"], components


def enum_of(field: dict, components: dict) -> set:
    """Every value an enum field allows, inline or through its components (one per choice
    set, drf-spectacular's postprocessing names them)."""
    values = set(field.get("enum", []))
    for option in field.get("oneOf", []) + field.get("allOf", []):
        values |= set(components[option["$ref"].rsplit("/", 1)[1]]["enum"])
    return values


def test_the_schema_states_the_window(partner_api):
    field = account_create_schema(partner_api)[0]["period_start"]
    assert "from 2000-01-01T00:00:00Z to now" in field["description"]


# --- countries --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("country", "says"),
    [
        ("ZZ", "“ZZ” is a user-assigned code, not a country"),
        ("XK", "“XK” is a user-assigned code"),
        ("QM", "“QM” is a user-assigned code"),
        ("AA", "“AA” is a user-assigned code"),
        ("ää", "“ää” is not an ISO 3166-1 alpha-2 country code"),
        ("fr", "Country codes are upper case: “FR”, not “fr”."),
        ("F", "“F” is not an ISO 3166-1 alpha-2 country code"),
    ],
)
def test_a_country_that_is_not_an_iso_code_is_a_400_saying_why(partner_api, catalog, country, says):
    response = partner_api.post("/api/v1/accounts", new_account(country=country), format="json")
    assert says in refused(response, "country")
    assert not Account.objects.exists()


def test_an_iso_country_is_kept_and_the_schema_lists_every_code(partner_api, catalog):
    response = partner_api.post("/api/v1/accounts", new_account(country="DE"), format="json")
    assert response.status_code == 201 and response.json()["country"] == "DE"
    fields, components = account_create_schema(partner_api)
    codes = enum_of(fields["country"], components)
    assert {"DE", "FR", "GR", "SS", ""} <= codes
    assert not codes & {"ZZ", "XK", "QM", "AA", "fr"}
    assert len(codes) == 250  # the 249 codes ISO assigns, and "" for none


# --- slugs ------------------------------------------------------------------------------------


def test_a_slug_is_kept_in_lower_case_and_taken_whatever_its_case(partner_api, catalog):
    first = partner_api.post("/api/v1/accounts", new_account(slug="A1"), format="json")
    assert first.status_code == 201 and first.json()["slug"] == "a1"
    again = partner_api.post("/api/v1/accounts", new_account(slug="a1"), format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "slug_unavailable"
    reserved = partner_api.post("/api/v1/accounts", new_account(slug="Admin"), format="json")
    assert reserved.status_code == 409
    assert list(Account.objects.values_list("slug", flat=True)) == ["a1"]
    found = partner_api.get("/api/v1/accounts/A1")
    assert found.status_code == 200 and found.json()["slug"] == "a1"
    assert partner_api.get("/api/v1/accounts/A1/usage").status_code == 200


def test_the_database_refuses_a_slug_that_is_not_lower_case(account):
    with pytest.raises(IntegrityError), transaction.atomic():
        Account.objects.create(slug="Elsewhere", name="x", billing_email="b@x.example")
    with pytest.raises(IntegrityError), transaction.atomic():
        Account.objects.filter(pk=account.pk).update(slug="SHOP")


def migration():
    return importlib.import_module("accounts.migrations.0003_input_at_the_edge")


def test_the_migration_lowers_mixed_case_slugs_and_stops_on_two_that_differ_by_case(db):
    assert migration().slug_renames(["shop", "Bloom", "ACME-2"]) == {
        "Bloom": "bloom",
        "ACME-2": "acme-2",
    }
    with pytest.raises(RuntimeError, match="differ only by case: 'A1' and 'a1'; 'B' and 'b'"):
        migration().slug_renames(["a1", "b", "A1", "B", "c"])


def test_the_migration_renames_the_rows_it_finds(make_account):
    make_account(slug="bloom")
    make_account(slug="acme")
    with connection.cursor() as cursor:  # as the rows were before the constraint existed
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending trigger events: ALTER
        cursor.execute("ALTER TABLE accounts_account DROP CONSTRAINT account_slug_lower_case")
        cursor.execute("UPDATE accounts_account SET slug = 'Bloom' WHERE slug = 'bloom'")
    migration().slugs_to_lower_case(django_apps, None)
    assert sorted(Account.objects.values_list("slug", flat=True)) == ["acme", "bloom"]
    with connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_account SET slug = 'ACME' WHERE slug = 'bloom'")
    with pytest.raises(RuntimeError, match="'ACME' and 'acme'"):
        migration().slugs_to_lower_case(django_apps, None)


# --- text -------------------------------------------------------------------------------------


def test_control_bidi_and_invisible_characters_are_refused_naming_field_and_character(
    partner_api, catalog
):
    body = new_account(
        name="Bloom\u202egnp.exe",  # RIGHT-TO-LEFT OVERRIDE: reads "Bloomexe.png"
        company="\x1b[31mBloom SAS\x1b[0m",  # an ANSI escape
        vat_id="FR\u200b40303265045",  # ZERO WIDTH SPACE
    )
    response = partner_api.post("/api/v1/accounts", body, format="json")
    assert response.status_code == 400
    fields = response.json()["error"]["details"]["fields"]
    assert "U+202E (RIGHT-TO-LEFT OVERRIDE) at position 6" in fields["name"][0]
    assert "U+001B (a control character) at position 1" in fields["company"][0]
    assert "U+200B (ZERO WIDTH SPACE)" in fields["vat_id"][0]
    assert not Account.objects.exists()


@pytest.mark.parametrize(
    "char",
    [
        "\u202a",  # LEFT-TO-RIGHT EMBEDDING
        "\u2066",  # LEFT-TO-RIGHT ISOLATE
        "\u2069",  # POP DIRECTIONAL ISOLATE
        "\u200f",  # RIGHT-TO-LEFT MARK
        "\u200d",  # ZERO WIDTH JOINER
        "\ufeff",  # ZERO WIDTH NO-BREAK SPACE (the BOM)
        "\u00ad",  # SOFT HYPHEN
        "\u2028",  # LINE SEPARATOR
        "\x00",  # NUL (escaped in JSON: not a NUL byte of the body)
        "\x7f",  # DEL
        "\x9b",  # C1's control sequence introducer
        "\n",  # a line break: a name is one line
    ],
)
def test_every_kind_of_hidden_character_is_refused_in_a_name(partner_api, catalog, char):
    response = partner_api.post(
        "/api/v1/accounts", new_account(name=f"Shop{char}Co"), format="json"
    )
    assert f"U+{ord(char):04X}" in refused(response, "name")


def test_names_in_any_script_are_still_accepted(partner_api, catalog):
    body = new_account(name="Ölfabrik Café 東京 مقهى", company="Ünal & Söhne\u00a0GmbH 💸")
    response = partner_api.post("/api/v1/accounts", body, format="json")
    assert response.status_code == 201, response.json()
    assert Account.objects.get().name == "Ölfabrik Café 東京 مقهى"


def test_a_webhook_description_with_a_bidi_override_is_refused(partner_api, partner):
    response = partner_api.post(
        "/api/v1/webhook-endpoints",
        {"url": "https://hooks.example/in", "description": "prod\u202e"},
        format="json",
    )
    assert "U+202E" in refused(response, "description")


# --- events before the first subscription -----------------------------------------------------


def event(event_id: str, at: datetime, account: str = "shop", ticket: str = "T1") -> dict:
    return {
        "id": event_id,
        "account": account,
        "type": "message",
        "occurred_at": at.isoformat().replace("+00:00", "Z"),
        "ticket": ticket,
        "channel": "email",
        "author": "agent",
    }


def post(client, events, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        return client.post("/api/v1/events", {"events": events}, format="json")


def test_events_before_the_first_subscription_are_refused_one_by_one(
    make_account, partner_api, django_capture_on_commit_callbacks
):
    opened = NOW - timedelta(days=3)
    with time_machine.travel(opened, tick=False):
        make_account(slug="shop")
    events = [
        event("before", opened - timedelta(seconds=1)),
        event("at-start", opened),
        event("year-2000", datetime(2000, 1, 2, tzinfo=UTC), ticket="T2"),
        event("later", NOW - timedelta(hours=1), ticket="T3"),
    ]
    response = post(partner_api, events, django_capture_on_commit_callbacks)
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 2
    assert [r["index"] for r in body["rejected"]] == [0, 2]
    for rejected in body["rejected"]:
        error = rejected["error"]
        assert error["code"] == "before_subscription"
        assert error["details"] == {"field": "occurred_at"}
        assert (
            "before the account's first subscription started (2026-11-19T12:00:00Z)"
            in (error["message"])
        )
    assert set(Event.objects.values_list("event_id", flat=True)) == {"at-start", "later"}


def test_a_migrated_customer_sends_the_events_of_the_period_under_way(
    make_account, partner_api, django_capture_on_commit_callbacks
):
    """P1: migrated mid-cycle, its period began before we knew it; that period's events
    count with it, and only those."""
    make_account(slug="shop", period_start=datetime(2026, 10, 5, tzinfo=UTC))
    assert Subscription.objects.get().usage_period_start == datetime(2026, 11, 5, tzinfo=UTC)
    events = [
        event("in-period", datetime(2026, 11, 5, tzinfo=UTC)),
        event("last-period", datetime(2026, 11, 4, 23, 59, tzinfo=UTC), ticket="T2"),
    ]
    body = post(partner_api, events, django_capture_on_commit_callbacks).json()
    assert body["accepted"] == 1
    assert [(r["index"], r["error"]["code"]) for r in body["rejected"]] == [
        (1, "before_subscription")
    ]


def test_a_batch_of_events_where_every_one_is_too_early_is_a_400(
    account, account_api, django_capture_on_commit_callbacks
):
    events = [event("e1", NOW - timedelta(days=1))]
    response = post(account_api, events, django_capture_on_commit_callbacks)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "all_events_rejected"


def test_an_account_slug_in_any_case_reaches_the_account(
    make_account, partner_api, django_capture_on_commit_callbacks
):
    with time_machine.travel(NOW - timedelta(days=1), tick=False):
        make_account(slug="shop")
    body = post(
        partner_api, [event("e1", NOW, account="SHOP")], django_capture_on_commit_callbacks
    ).json()
    assert body == {"accepted": 1, "duplicates": 0, "rejected": []}


@pytest.mark.parametrize("caller", ["partner", "account"])
def test_the_check_costs_the_same_queries_for_1_event_or_1000(make_account, partner_api, caller):
    """At most one query per batch: the first subscription is read with the accounts (the
    re-evaluation, queued after the commit, is not counted: the test never commits)."""
    with time_machine.travel(NOW - timedelta(days=1), tick=False):
        shop = make_account(slug="shop")
        make_account(slug="other")
    if caller == "account":
        _, raw = account_services.api_key_create(partner=shop.partner, account=shop)
        client = client_with_key(raw)
    else:
        client = partner_api

    def queries(count: int, prefix: str) -> int:
        events = [
            event(f"{prefix}-{n}", NOW - timedelta(minutes=n % 600), ticket=f"T{n}")
            | ({"account": "other"} if caller == "partner" and n % 2 else {})
            for n in range(count)
        ]
        with CaptureQueriesContext(connection) as captured:
            body = client.post("/api/v1/events", {"events": events}, format="json").json()
        assert body["accepted"] == count and not body["rejected"]
        return len(captured)

    queries(1, "warm")  # the key's last_used_at is written once a minute
    assert queries(1, "one") == queries(1000, "many")

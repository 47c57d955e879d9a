"""POST /api/v1/events: batches, idempotency, per-event rejection, 4xx for bad requests."""

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from metering.models import Charge, Event, Reevaluation

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)


def stamp(minutes: int = 0) -> str:
    return (
        (NOW - timedelta(hours=2) + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")
    )


def message(event_id: str, ticket: str = "T1", author: str = "customer", minutes: int = 0, **extra):
    return {
        "id": event_id,
        "account": "shop",
        "type": "message",
        "occurred_at": stamp(minutes),
        "ticket": ticket,
        "channel": "email",
        "author": author,
        **extra,
    }


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def account(make_account):
    """Subscribed the day before the events it is sent (earlier events are refused)."""
    with time_machine.travel(NOW - timedelta(days=1), tick=False):
        return make_account()


@pytest.fixture
def post(partner_api, django_capture_on_commit_callbacks):
    def send(events, client=partner_api, **headers):
        with django_capture_on_commit_callbacks(execute=True):
            return client.post("/api/v1/events", {"events": events}, format="json", **headers)

    return send


def test_H1_a_batch_is_stored_and_re_evaluated(post, account):
    response = post([message("e1"), message("e2", author="agent", minutes=5)])
    assert response.status_code == 202
    assert response.json() == {"accepted": 2, "duplicates": 0, "rejected": []}
    stored = Event.objects.get(account=account, event_id="e1")
    assert stored.occurred_at == NOW - timedelta(hours=2) and stored.received_at == NOW
    charge = Charge.objects.get(account=account, meter="helpdesk_tickets", subject="T1")
    assert charge.status == "final" and charge.unit == 1 and "H1" in charge.rules
    assert charge.billable_at == NOW - timedelta(hours=2) + timedelta(minutes=5)
    assert not Reevaluation.objects.exists()  # the queue was drained


def test_H2_a_resent_batch_is_stored_once_and_counted_once(post, account):
    batch = [message("e1"), message("e2", author="agent", minutes=5)]
    post(batch)
    again = post(batch + [message("e3", author="agent", minutes=9)])
    assert again.json() == {"accepted": 1, "duplicates": 2, "rejected": []}
    assert Event.objects.filter(account=account).count() == 3
    assert (
        Charge.objects.filter(account=account, meter="helpdesk_tickets", status="final").count()
        == 1
    )


def test_same_id_twice_in_one_batch_is_one_event(post, account):
    response = post([message("e1"), message("e1")])
    assert response.json() == {"accepted": 1, "duplicates": 1, "rejected": []}


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"type": "smoke_signal"}, "type"),
        ({"id": None}, "id"),
        ({"ticket": None}, "ticket"),
        ({"channel": "pigeon"}, "channel"),
        ({"author": None}, "author"),
        ({"public": "yes"}, "public"),
        ({"occurred_at": "yesterday"}, "occurred_at"),
        ({"occurred_at": "2026-11-22T10:00:00"}, "occurred_at"),  # no offset
        ({"occurred_at": "2027-01-01T00:00:00Z"}, "occurred_at"),  # the future
        ({"account": "not-ours"}, "account"),
    ],
)
def test_a_malformed_event_is_rejected_with_its_index_and_the_rest_kept(post, account, bad, field):
    events = [message("good-1"), message("bad") | bad, message("good-2", author="agent", minutes=1)]
    events[1] = {k: v for k, v in events[1].items() if v is not None}
    response = post(events)
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 2 and body["duplicates"] == 0
    [rejected] = body["rejected"]
    assert rejected["index"] == 1
    assert rejected["error"]["details"]["field"] == field
    assert rejected["error"]["message"]
    assert set(Event.objects.values_list("event_id", flat=True)) == {"good-1", "good-2"}


def test_an_account_the_key_does_not_own_is_404_and_stores_nothing(
    post, make_account, other_partner_api
):
    make_account(slug="shop")
    response = post([message("e1")], client=other_partner_api)
    assert response.status_code == 404
    body = response.json()
    assert body["error"]["code"] == "not_found"
    assert body["rejected"][0]["error"]["message"] == "No account 'shop'."
    assert not Event.objects.exists()


def test_an_account_key_may_omit_account_but_not_name_another(
    post, account_api, account, make_account
):
    make_account(slug="elsewhere")
    event = message("e1")
    del event["account"]
    assert post([event], client=account_api).json()["accepted"] == 1
    other = message("e2") | {"account": "elsewhere"}
    response = post([other], client=account_api)
    assert response.status_code == 404


def test_partner_key_events_need_an_account(post, account):
    event = message("e1")
    del event["account"]
    response = post([event])
    assert response.status_code == 400
    assert response.json()["rejected"][0]["error"]["details"]["field"] == "account"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"events": []}, "empty_batch"),
        ({"events": "nope"}, "invalid_batch"),
        ([1, 2], "invalid_batch"),
        ({}, "invalid_batch"),
    ],
)
def test_bad_batches_are_400(partner_api, account, body, code):
    response = partner_api.post("/api/v1/events", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_more_than_1000_events_is_refused_whole(partner_api, account):
    events = [message(f"e{i}") for i in range(1001)]
    response = partner_api.post("/api/v1/events", {"events": events}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "batch_too_large"
    assert not Event.objects.exists()


def test_non_json_body_is_400(partner_api, account):
    response = partner_api.generic(
        "POST", "/api/v1/events", "events=1", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


def test_a_body_over_the_size_limit_is_413(partner_api, account, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    events = [message(f"e{i}", note="x" * 200) for i in range(100)]
    response = partner_api.generic(
        "POST", "/api/v1/events", json.dumps({"events": events}), content_type="application/json"
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert not Event.objects.exists()


def test_without_a_key_nothing_is_stored(client, account):
    response = client.post(
        "/api/v1/events", {"events": [message("e1")]}, content_type="application/json"
    )
    assert response.status_code in (401, 403)
    assert not Event.objects.exists()

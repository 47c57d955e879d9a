"""One event that cannot be stored or evaluated costs only itself: the rest of its batch is kept,
and nothing a sender writes turns into a 500 (issue 9, money safety)."""

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from metering.models import Charge, Event, Reevaluation
from metering.tasks import finalize_windows_task
from metering.validation import (
    EARLIEST,
    MAX_CLOCK_SKEW,
    EventError,
    EventIn,
    Unreadable,
    parse_batch,
    validate_event,
)

from .helpers import celery_configured

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
DEEP = 20_000


def message(event_id: str, ticket: str = "T1", author: str = "customer", **extra) -> dict:
    return {
        "id": event_id,
        "account": "shop",
        "type": "message",
        "occurred_at": (NOW - timedelta(hours=1)).isoformat(),
        "ticket": ticket,
        "channel": "email",
        "author": author,
        **extra,
    }


def updated(event_id: str, changes_json: str) -> str:
    """A ticket_updated event as JSON text, so that `changes` may be anything a sender types."""
    head = json.dumps({k: v for k, v in message(event_id).items() if k not in ("channel",)})
    head = head.replace('"type": "message"', '"type": "ticket_updated"')
    return head[:-1] + f', "changes": {changes_json}}}'


def deeply_nested(levels: int) -> str:
    return '{"a": ' * levels + "1" + "}" * levels


# Each one broke the whole batch before (500, or year 0 on every re-evaluation afterwards).
BAD_EVENTS = {
    "year 1": (json.dumps(message("bad", occurred_at="0001-01-01T00:00:00Z")), "occurred_at"),
    "year 9999 with an offset": (
        json.dumps(message("bad", occurred_at="9999-12-31T23:59:59-01:00")),
        "occurred_at",
    ),
    "a NUL byte in the id": (json.dumps(message("bad\x00")), "id"),
    "a lone surrogate in the ticket": (json.dumps(message("bad", ticket="T\ud800")), "ticket"),
    "an escape character in the customer": (
        json.dumps(message("bad", customer="\x1b[31mred")),
        "customer",
    ),
    "a list where the ticket belongs": (json.dumps(message("bad", ticket=["T1"])), "ticket"),
    "a list where the channel belongs": (json.dumps(message("bad", channel=["email"])), "channel"),
    "an object where the type belongs": (json.dumps(message("bad", type={"a": 1})), "type"),
    "an `into` of 256 characters": (
        json.dumps(message("bad", type="ticket_merged", into="T" * 256)),
        "into",
    ),
    "an id of 256 characters": (json.dumps(message("b" * 256)), "id"),
    "changes 20,000 levels deep": (updated("bad", deeply_nested(DEEP)), "event"),
    "changes 5 levels deep": (updated("bad", deeply_nested(5)), "changes"),
    "changes with 101 entries": (
        updated("bad", json.dumps({f"k{i}": i for i in range(101)})),
        "changes",
    ),
    "an infinite number in changes": (updated("bad", '{"priority": 1e999}'), "changes"),
    "a NUL byte in changes": (updated("bad", '{"tags": ["vip\\u0000"]}'), "changes"),
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


def post_text(client, text: str):
    return client.generic("POST", "/api/v1/events", text, content_type="application/json")


@pytest.mark.parametrize(("bad", "field"), BAD_EVENTS.values(), ids=BAD_EVENTS.keys())
def test_one_bad_event_in_a_batch_of_1000_is_rejected_and_999_are_stored(
    partner_api, account, bad, field
):
    good = [json.dumps(message(f"e{i}", ticket=f"T{i % 50}")) for i in range(999)]
    events = good[:500] + [bad] + good[500:]
    response = post_text(partner_api, '{"events": [' + ", ".join(events) + "]}")
    assert response.status_code == 202, response.content[:500]
    body = response.json()
    assert body["accepted"] == 999 and body["duplicates"] == 0
    [rejected] = body["rejected"]
    assert rejected["index"] == 500
    assert rejected["error"]["details"]["field"] == field
    assert rejected["error"]["message"]
    assert Event.objects.count() == 999
    assert not Event.objects.filter(event_id__startswith="b").exists()


def test_an_event_from_year_1_is_refused_and_the_rest_of_its_batch_is_billed(
    partner_api, account, django_capture_on_commit_callbacks
):
    events = [
        message("e1"),
        message("bad", occurred_at="0001-01-01T00:00:00Z", author="agent"),
        message("e2", author="agent") | {"occurred_at": (NOW - timedelta(minutes=30)).isoformat()},
    ]
    with django_capture_on_commit_callbacks(execute=True):
        response = partner_api.post("/api/v1/events", {"events": events}, format="json")
    assert response.status_code == 202
    assert response.json()["rejected"][0]["index"] == 1
    charge = Charge.objects.get(subject="T1", meter="helpdesk_tickets")
    assert charge.status == "final" and "H1" in charge.rules
    assert not Reevaluation.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        "[" * DEEP + "]" * DEEP,  # not even a batch
        '{"events": [], "extra": ' + deeply_nested(DEEP) + "}",  # deep beside the events
    ],
    ids=["a deep list", "a deep field beside the events"],
)
def test_a_body_nested_too_deeply_is_a_400_that_says_so(partner_api, account, body):
    response = post_text(partner_api, body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "nested_too_deep"


@pytest.mark.parametrize(
    "body", ['{"events": [NaN]}', '{"events": [1e5', b'{"events": ["\xff"]}'], ids=repr
)
def test_a_body_that_is_not_json_is_a_400(partner_api, account, body):
    response = post_text(partner_api, body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


def test_a_deep_body_elsewhere_in_the_api_is_a_400(partner_api, account):
    response = partner_api.generic(
        "POST", "/api/v1/accounts", deeply_nested(DEEP), content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "nested_too_deep"


# --- The pure checks, at their edges ---------------------------------------------------------


def at(instant: datetime) -> dict:
    return message("e1") | {"occurred_at": instant.isoformat()}


@pytest.mark.parametrize(
    ("occurred_at", "accepted"),
    [
        (EARLIEST, True),
        (EARLIEST - timedelta(seconds=1), False),
        (NOW + MAX_CLOCK_SKEW, True),
        (NOW + MAX_CLOCK_SKEW + timedelta(seconds=1), False),
        (EARLIEST.astimezone(UTC).replace(tzinfo=None), False),  # no offset
    ],
)
def test_occurred_at_must_fall_between_2000_and_an_hour_from_now(occurred_at, accepted):
    checked = validate_event(at(occurred_at), now=NOW)
    assert isinstance(checked, EventIn) is accepted, checked


@pytest.mark.parametrize(
    ("extra", "accepted"),
    [
        ({"ticket": "T" * 255}, True),
        ({"ticket": 1234567}, True),  # numeric ids are kept as strings
        ({"ticket": True}, False),
        ({"ticket": ""}, False),
        ({"ticket": "tab\there"}, False),
        ({"ticket": "é✓ 票"}, True),  # any printable text
        ({"customer": "\x85"}, False),  # a C1 control
        ({"type": "ticket_updated", "changes": {"note": "two\nlines\tand a tab"}}, True),
        ({"type": "ticket_updated", "changes": {"a": {"b": {"c": [1]}}}}, True),  # 4 levels
        ({"type": "ticket_updated", "changes": {"a": {"b": {"c": [[1]]}}}}, False),
        ({"type": "ticket_updated", "changes": {"k" * 256: 1}}, False),
        ({"type": "ticket_updated", "changes": {"note": "x" * 1001}}, False),
        ({"type": "ticket_updated", "changes": ["spam"]}, False),
        ({"type": "campaign_click", "session": "S", "campaign": "c" * 256}, False),
    ],
)
def test_every_string_is_bounded_and_printable(extra, accepted):
    checked = validate_event(message("e1") | extra, now=NOW)
    assert isinstance(checked, EventIn) is accepted, checked


def test_an_error_never_echoes_the_raw_value():
    huge = "\ud800" * 10_000
    checked = validate_event(message("e1", channel=huge), now=NOW)
    assert isinstance(checked, EventError)
    assert "\ud800" not in checked.message and len(checked.message) < 400


def test_the_batch_parser_sets_aside_only_the_event_too_deep_to_read():
    text = (
        '{"events": [{"id": "a"}, '
        + deeply_nested(DEEP)[:-1]
        + ', "note": "}]\\" {["}'  # brackets inside a string do not count
        + ', {"id": "b"}], "more": [1, {"x": null}]}'
    )
    body = parse_batch(text)
    assert body["events"][0] == {"id": "a"} and body["events"][2] == {"id": "b"}
    assert isinstance(body["events"][1], Unreadable)
    assert body["more"] == [1, {"x": None}]


# --- Reads: GET usage?period=, a ticket's billing -------------------------------------------


@pytest.mark.parametrize(
    "period", ["0000-01", "9999-12", "1999-12", "2028-01", "2026-13", "2026-11\n", "٢٠٢٦-11"]
)
def test_usage_of_a_period_out_of_range_or_malformed_is_a_400(partner_api, account, period):
    response = partner_api.get("/api/v1/accounts/shop/usage", {"period": period})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["details"]["field"] == "period"
    assert "2000-01 to 2027-12" in error["message"]


@pytest.mark.parametrize("period", ["2000-01", "2027-12"])
def test_usage_of_the_first_and_last_periods_one_may_ask_for(partner_api, account, period):
    response = partner_api.get("/api/v1/accounts/shop/usage", {"period": period})
    assert response.status_code == 200
    assert response.json()["period"]["start"].startswith(period)


@pytest.mark.parametrize("ticket", ["%00", "T%1B", "x" * 256])
def test_billing_of_a_ticket_id_that_cannot_exist_is_a_400(partner_api, account, ticket):
    response = partner_api.get(f"/api/v1/accounts/shop/tickets/{ticket}/billing")
    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == "ticket"


# --- The broker is down ----------------------------------------------------------------------


@pytest.fixture
def broker_down():
    """Celery pointed at a port nothing listens on, tasks sent rather than run in-process."""
    with celery_configured(broker_url="redis://127.0.0.1:1/0", task_always_eager=False):
        yield


def test_ingest_answers_202_with_the_broker_down_and_the_sweep_bills_the_events_later(
    partner_api, account, broker_down, django_capture_on_commit_callbacks, settings, caplog
):
    events = [message("e1"), message("e2", author="agent")]
    started = time.perf_counter()
    with django_capture_on_commit_callbacks(execute=True):
        response = partner_api.post("/api/v1/events", {"events": events}, format="json")
    assert response.status_code == 202
    assert time.perf_counter() - started < 5  # kombu alone would retry the broker forever
    assert response.json()["accepted"] == 2
    assert Event.objects.count() == 2
    assert Reevaluation.objects.filter(subject="T1").exists()  # queued in the database
    assert not Charge.objects.exists()
    assert "Could not queue re-evaluation" in caplog.text
    # Beat's periodic task drains the database queue whatever happened to the broker.
    sweep = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert finalize_windows_task.name in sweep
    finalize_windows_task()
    assert Charge.objects.get(subject="T1", meter="helpdesk_tickets").status == "final"
    assert not Reevaluation.objects.exists()

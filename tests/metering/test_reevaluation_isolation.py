"""One subject that cannot be evaluated is set aside, recorded and retried: it never blocks the
queue, other subjects, other tenants' ingest or run_billing (issue 9, money safety). A subject is
evaluated by one worker at a time, and once more when events came during its evaluation."""

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import DataError, OperationalError

from accounts.models import Account
from billing.run import run_billing
from metering import event_store, rules, services
from metering.models import Charge, Event, Reevaluation

from .helpers import ingest

PERIOD = datetime(2026, 11, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def answered(ticket: str, at: datetime = NOW - timedelta(hours=3)) -> list[dict]:
    """A customer's message and an agent's public reply: billable (H1)."""
    return [
        {
            "id": f"{ticket}-c",
            "type": "message",
            "ticket": ticket,
            "occurred_at": at,
            "channel": "email",
            "author": "customer",
        },
        {
            "id": f"{ticket}-a",
            "type": "message",
            "ticket": ticket,
            "occurred_at": at + MINUTE,
            "channel": "email",
            "author": "agent",
        },
    ]


def store(account: Account, events: list[dict]) -> None:
    """Ingest without draining the queue, as the API does with a broker."""
    for event in events:
        event["account"] = account.slug
        event["occurred_at"] = event["occurred_at"].isoformat()
    result = services.events_ingest(
        raw_events=events, accounts=Account.objects.all(), fixed_account=None, now=NOW
    )
    assert not result.rejected


def billed(subject: str) -> bool:
    return Charge.objects.filter(subject=subject, meter="helpdesk_tickets", status="final").exists()


@pytest.fixture
def shop(make_account):
    """Opened on November 1st, its cycle anchored there (pays its first fees: not migrated)."""
    with time_machine.travel(PERIOD, tick=False):
        return make_account(slug="shop")


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def engine_fails_on(monkeypatch):
    """Make the rules engine raise on the family holding `ticket` (a bug, a bad event, ...)."""
    real = rules.evaluate_tickets

    def fail_on(ticket: str) -> None:
        def evaluate(events, *, as_of):
            events = list(events)
            if any(event.ticket == ticket for event in events):
                raise RuntimeError(f"the engine failed on {ticket}")
            return real(events, as_of=as_of)

        monkeypatch.setattr(rules, "evaluate_tickets", evaluate)

    return fail_on


def test_a_ticket_the_engine_fails_on_is_set_aside_and_the_others_are_billed(
    shop, clock, engine_fails_on
):
    engine_fails_on("T-bad")
    ingest(shop, answered("T-1") + answered("T-bad") + answered("T-2"), now=NOW)
    assert billed("T-1") and billed("T-2")
    assert not Charge.objects.filter(subject="T-bad").exists()
    row = Reevaluation.objects.get()  # the rest of the queue is drained
    assert row.subject == "T-bad" and row.attempts == 1
    assert row.last_error == "RuntimeError: the engine failed on T-bad"
    assert row.failed_at == NOW and row.next_attempt_at == NOW + MINUTE
    assert row.claimed_at is None


def test_a_set_aside_ticket_is_retried_with_backoff_until_it_evaluates(
    shop, clock, engine_fails_on, monkeypatch
):
    engine_fails_on("T-bad")
    ingest(shop, answered("T-bad"), now=NOW)
    clock.shift(59)
    assert services.reevaluate_all_pending() == 0  # still backing off
    clock.shift(1)
    assert services.reevaluate_all_pending() == 1
    row = Reevaluation.objects.get()
    assert row.attempts == 2 and row.next_attempt_at == NOW + 3 * MINUTE  # 1, then 2 minutes
    monkeypatch.undo()  # the fix is deployed
    clock.shift(2 * 60)
    assert services.reevaluate_all_pending() == 1
    assert billed("T-bad")
    assert not Reevaluation.objects.exists()


@pytest.mark.parametrize(
    ("attempts", "delay"),
    [(1, MINUTE), (2, 2 * MINUTE), (3, 4 * MINUTE), (9, 256 * MINUTE), (10, timedelta(hours=6))],
)
def test_retries_back_off_exponentially_up_to_six_hours(attempts, delay):
    assert services.retry_delay(attempts) == delay
    assert services.retry_delay(10_000) == timedelta(hours=6)


def test_run_billing_completes_when_one_subject_cannot_be_evaluated(shop, clock, engine_fails_on):
    engine_fails_on("T-bad")
    store(shop, answered("T-good") + answered("T-bad"))  # queued, not yet evaluated
    clock.move_to(PERIOD + timedelta(days=30, hours=1))
    run = run_billing()
    assert run.invoices  # the first invoice and November's close
    assert billed("T-good")
    assert Reevaluation.objects.get().subject == "T-bad"


def test_an_event_from_year_1_stored_before_validation_sets_aside_only_its_ticket(
    make_account, clock, partner_api, django_capture_on_commit_callbacks
):
    # Stored before ingest refused such dates. With the cycle anchored on the 20th at noon, the
    # usage period holding 0001-01-01 would start in December of year 0: every re-evaluation of
    # the ticket failed, and with it the whole batch, ingest in-process and run_billing.
    shop = make_account(slug="shop")
    Event.objects.create(
        account=shop,
        event_id="legacy",
        type="message",
        occurred_at=datetime(1, 1, 1, tzinfo=UTC),
        received_at=NOW,
        ticket="T-old",
        channel="email",
        author="agent",
    )
    event_store.mark_for_reevaluation([(shop.pk, "ticket", "T-old")], now=NOW)
    with time_machine.travel(PERIOD, tick=False):  # subscribed before its events
        make_account(slug="elsewhere")
    events = answered("T-other")
    for event in events:
        event |= {"account": "elsewhere", "occurred_at": event["occurred_at"].isoformat()}
    with django_capture_on_commit_callbacks(execute=True):  # in-process: the eager task runs
        response = partner_api.post("/api/v1/events", {"events": events}, format="json")
    assert response.status_code == 202
    assert billed("T-other")  # another tenant's ticket, evaluated in the same pass
    row = Reevaluation.objects.get()
    assert row.subject == "T-old" and row.attempts == 1
    assert "year 0 is out of range" in row.last_error
    clock.move_to(NOW + timedelta(days=30, hours=1))
    assert run_billing().invoices


def test_a_charge_the_database_refuses_costs_only_its_subject(shop, clock, monkeypatch):
    real = event_store.insert_charges

    def insert(rows):
        if any(row[2] == "T-bad" for row in rows):
            raise DataError("value too long for type character varying(255)")
        real(rows)

    monkeypatch.setattr(event_store, "insert_charges", insert)
    tickets = [f"T-{n}" for n in range(6)]
    events = [
        event for ticket in [*tickets[:3], "T-bad", *tickets[3:]] for event in answered(ticket)
    ]
    ingest(shop, events, now=NOW)
    assert all(billed(ticket) for ticket in tickets)  # found by halving the batch
    row = Reevaluation.objects.get()
    assert row.subject == "T-bad" and row.last_error.startswith("DataError: value too long")


def test_a_database_outage_sets_nothing_aside_and_releases_the_batch(shop, clock, monkeypatch):
    def insert(rows):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(event_store, "insert_charges", insert)
    store(shop, answered("T-1") + answered("T-2"))
    with pytest.raises(OperationalError):
        services.reevaluate_pending()
    rows = Reevaluation.objects.all()
    assert len(rows) == 2
    assert all(r.attempts == 0 and r.claimed_at is None and r.next_attempt_at is None for r in rows)


def test_operators_see_set_aside_subjects_and_their_error_in_the_admin(
    shop, clock, engine_fails_on, client, django_user_model
):
    engine_fails_on("T-bad")
    ingest(shop, answered("T-bad") + answered("T-good"), now=NOW)
    operator = django_user_model.objects.create_superuser("ops", "ops@example.com", "pw-ops-123")
    client.force_login(operator)
    page = client.get("/admin/metering/reevaluation/", {"set_aside": "yes"})
    assert page.status_code == 200
    assert b"T-bad" in page.content and b"RuntimeError: the engine failed on T-bad" in page.content
    row = Reevaluation.objects.get()
    detail = client.get(f"/admin/metering/reevaluation/{row.pk}/change/")
    # Read-only: no save buttons. (Asked of the buttons, not of the word "Save", which the
    # page's random CSRF token could spell.)
    assert detail.status_code == 200
    assert not re.search(rb'name="_(save|saveasnew|addanother|continue)"', detail.content)
    client.post(
        "/admin/metering/reevaluation/",
        {"action": "retry_now", "_selected_action": [row.pk]},
    )
    row.refresh_from_db()
    assert row.next_attempt_at == NOW


def test_a_ticket_marked_again_while_a_worker_evaluates_it_waits_for_that_worker(shop, clock):
    """The agent's answer arrives while a worker evaluates the ticket from the customer's
    message alone: no second worker takes the ticket meanwhile (two evaluations of one subject
    at once could leave the older one's charges last), and the first worker's finish hands it
    back, so it is evaluated once more with the answer, and billed (H1)."""
    message, answer = answered("T-1")
    store(shop, [message])
    lease = services.LEASE
    first = event_store.claim_reevaluations(100, now=NOW, stale_before=NOW - lease)
    assert [claim[2:] for claim in first] == [(shop.id, "ticket", "T-1")]
    services.reevaluate(subjects=[claim[2:] for claim in first], as_of=NOW)
    store(shop, [answer])  # marks T-1 again during the evaluation
    assert event_store.claim_reevaluations(100, now=NOW, stale_before=NOW - lease) == []
    event_store.finish_reevaluations(first, done=True)
    assert not billed("T-1")  # the first evaluation saw only the message
    row = Reevaluation.objects.get()
    assert row.subject == "T-1" and row.claimed_at is None and row.attempts == 0
    assert services.reevaluate_all_pending() == 1
    assert billed("T-1") and not Reevaluation.objects.exists()

"""Re-evaluation reads a subject's events and charges from where they begin (issue 28, costs
flat as tables grow): EventSpan, kept by a trigger, bounds the months of events probed, the
subject's first event those of its charges, and what a bounded read finds is exactly what a
read of every month finds.

Months in 2024, as in test_partitions: their partitions exist only when a test makes them."""

import random
import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection

from accounts.models import Account
from metering import event_store, partitions, services
from metering.models import Charge, Event, EventSpan

from .helpers import ingest
from .test_partitions import make_months, ticket

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="spans are kept by PostgreSQL's triggers"
)

JULY = datetime(2024, 7, 1, tzinfo=UTC)
AUGUST = datetime(2024, 8, 1, tzinfo=UTC)
SEPTEMBER = datetime(2024, 9, 1, tzinfo=UTC)
OCTOBER = datetime(2024, 10, 1, tzinfo=UTC)
NOVEMBER = datetime(2024, 11, 1, tzinfo=UTC)


@pytest.fixture
def shop(make_account):
    make_months(JULY, AUGUST, SEPTEMBER, OCTOBER, NOVEMBER)
    with time_machine.travel(JULY, tick=False):
        return make_account(slug="shop", period_start=JULY)


def span(model, account, subject, kind="ticket"):
    return model.objects.get(account_id=account.pk, kind=kind, subject=subject).since


def charges(account) -> list[tuple]:
    return sorted(
        Charge.objects.filter(account=account).values_list(
            "subject", "meter", "unit", "status", "period_start", "billable_at", "rules"
        )
    )


def reply(name: str, at: datetime, n: int) -> dict:
    return {
        "id": f"{name}-r{n}",
        "type": "message",
        "ticket": name,
        "occurred_at": at,
        "channel": "email",
        "author": "agent",
    }


def test_spans_begin_at_the_first_event_received(shop):
    ingest(shop, ticket("OLD", AUGUST + timedelta(days=3)), now=AUGUST + timedelta(days=3, hours=2))
    later = OCTOBER + timedelta(days=5)
    ingest(shop, [reply("OLD", later, 2)], now=later + timedelta(minutes=1))
    ingest(shop, ticket("NEW", later), now=later + timedelta(hours=2))
    assert span(EventSpan, shop, "OLD") == AUGUST + timedelta(days=3, hours=2)
    assert span(EventSpan, shop, "NEW") == later + timedelta(hours=2)


def test_a_ticket_answered_months_later_is_evaluated_from_all_its_events(shop):
    """The bounded read finds what a read of every month finds: the same verdicts once every
    month is read (no span: every month)."""
    ingest(shop, ticket("OLD", AUGUST + timedelta(days=3)), now=AUGUST + timedelta(days=3, hours=2))
    later = OCTOBER + timedelta(days=5)
    ingest(shop, [reply("OLD", later, 2)], now=later)
    ingest(shop, ticket("NEW", later), now=later + timedelta(hours=2))
    bounded = charges(shop)
    assert ("OLD", "helpdesk_tickets", 1, "final", AUGUST) in [row[:5] for row in bounded]
    events = event_store.load_events(
        "ticket", "ticket", [(shop.pk, "OLD"), (shop.pk, "NEW")], ("campaign_click",), True
    )
    assert sorted(row[1] for row in events) == ["NEW-a", "NEW-c", "OLD-a", "OLD-c", "OLD-r2"]
    EventSpan.objects.all().delete()
    as_of = later + timedelta(days=1)
    services.reevaluate(
        subjects=[(shop.pk, "ticket", "OLD"), (shop.pk, "ticket", "NEW")], as_of=as_of
    )
    assert charges(shop) == bounded
    # The charge read from a month before the first event finds every row a full read finds.
    subjects = [(shop.pk, "ticket", "OLD"), (shop.pk, "ticket", "NEW")]
    since = services._charges_since({subjects[0]: AUGUST + timedelta(days=3)})
    assert event_store.charges_read(subjects, since=since) == event_store.charges_read(subjects)


def test_an_event_received_earlier_but_stored_later_moves_the_span_back(shop):
    at = SEPTEMBER + timedelta(days=10)
    ingest(shop, ticket("T", at), now=at + timedelta(hours=2))
    # Another web process, its clock a little behind, commits after this one.
    Event.objects.create(
        account=shop, event_id="T-late", type="internal_note", ticket="T",
        occurred_at=at, received_at=at - timedelta(days=20), author="agent",
    )  # fmt: skip
    assert span(EventSpan, shop, "T") == at - timedelta(days=20)
    # A row moved by an update, the rare way: the row trigger.
    Event.objects.filter(event_id="T-late").update(received_at=JULY + timedelta(days=1))
    assert span(EventSpan, shop, "T") == JULY + timedelta(days=1)
    events = event_store.load_events("ticket", "ticket", [(shop.pk, "T")], ("ai_session",), True)
    assert "T-late" in {row[1] for row in events}


def test_sessions_have_spans_of_their_own_kind(shop):
    at = SEPTEMBER + timedelta(days=2)
    ingest(
        shop,
        [
            {
                "id": "click-1",
                "type": "campaign_click",
                "session": "S-1",
                "occurred_at": at,
                "campaign": "spring",
            }
        ],
        now=at,
    )
    assert span(EventSpan, shop, "S-1", kind="browser_session") == at
    assert not EventSpan.objects.filter(kind="ticket").exists()


def months_probed(sql: str, params: list, table: str) -> set[str]:
    """The month partitions of `table` the statement's plan actually read, by EXPLAIN ANALYZE."""
    ((plan,),) = event_store.statement_run("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
    found, stack = set(), [plan[0]["Plan"]]
    while stack:
        node = stack.pop()
        stack.extend(node.get("Plans", ()))
        name = node.get("Relation Name", "")
        if name.startswith(f"{table}_p") and node.get("Actual Loops", 0) > 0:
            found.add(name)
    return found


def test_a_new_ticket_is_read_from_its_own_month_only(shop):
    for month in (JULY, AUGUST, SEPTEMBER):
        at = month + timedelta(days=4)
        ingest(shop, ticket(f"T-{month:%m}", at), now=at + timedelta(hours=2))
    at = OCTOBER + timedelta(days=4)
    ingest(shop, ticket("FRESH", at), now=at + timedelta(hours=2))
    ingest(shop, [reply("T-07", at, 2)], now=at + timedelta(hours=2))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE metering_event; ANALYZE metering_charge")
    fresh = [(shop.pk, "FRESH")]
    read = event_store.load_events_statement("ticket", "ticket", fresh, ("ai_session",), True)
    before = {f"{{}}_p2024_{m:02}" for m in (7, 8, 9)}  # months before FRESH began
    probed = months_probed(*read, "metering_event")
    assert "metering_event_p2024_10" in probed
    assert not probed & {name.format("metering_event") for name in before}
    old = [(shop.pk, "T-07")]
    read = event_store.load_events_statement("ticket", "ticket", old, ("ai_session",), True)
    assert {f"metering_event_p2024_{m:02}" for m in range(7, 12)} <= months_probed(
        *read, "metering_event"
    )
    fresh_subject = (shop.pk, "ticket", "FRESH")
    since = services._charges_since({fresh_subject: OCTOBER + timedelta(days=4)})
    read = event_store.charges_read_statement([fresh_subject], keep_before=None, since=since)
    probed = months_probed(*read, "metering_charge")
    assert "metering_charge_p2024_10" in probed
    # A period may begin up to a period before the first event (October 5th): September is
    # still read, August and July no more.
    assert "metering_charge_p2024_09" in probed
    assert not probed & {"metering_charge_p2024_07", "metering_charge_p2024_08"}


def test_a_restored_month_moves_the_spans_back(shop, tmp_path):
    at = AUGUST + timedelta(days=4)
    ingest(shop, ticket("T", at), now=at + timedelta(hours=2))
    records = partitions.partitions_archive(before=SEPTEMBER.date(), directory=tmp_path)
    (august,) = [r for r in records if r.table == "metering_event" and r.month == AUGUST.date()]
    # As if the span had been made after the archive (the migration's backfill saw no August).
    EventSpan.objects.filter(subject="T").update(since=OCTOBER)
    partitions.partition_restore(august)
    assert span(EventSpan, shop, "T") == at + timedelta(hours=2)


@pytest.mark.django_db(transaction=True)
def test_ingests_of_the_same_tickets_at_once_keep_the_earliest_span(make_account):
    """Eight requests at once, their clocks a few seconds apart, each carrying events of the
    same twenty tickets in its own order: none waits forever or fails, and each ticket's span
    is the earliest time any of them stamped."""
    shop = make_account(slug="busy")
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1)
    barrier = threading.Barrier(8)
    errors = []

    def send(n: int) -> None:
        events = [reply(f"T-{t}", start, n) for t in range(20)]
        random.Random(n).shuffle(events)
        for event in events:
            event["account"] = shop.slug
            event["occurred_at"] = event["occurred_at"].isoformat()
        try:
            barrier.wait()
            result = services.events_ingest(
                raw_events=events,
                accounts=Account.objects.all(),
                fixed_account=None,
                now=start + timedelta(seconds=n),
            )
            assert not result.rejected
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert Event.objects.filter(account=shop).count() == 160
    spans = dict(EventSpan.objects.filter(account_id=shop.pk).values_list("subject", "since"))
    assert spans == {f"T-{t}": start for t in range(20)}


@pytest.mark.parametrize("interval", ["month", "year", "30d"])
def test_no_usage_period_begins_more_than_the_margin_before_an_instant_in_it(interval):
    """What bounds the charge read: the period holding a unit's billable instant starts less
    than _LONGEST_PERIOD before it, whatever the anchor (month ends, leap days included)."""
    from plans import periods

    rng = random.Random(28)
    anchors = [datetime(2024, 1, day, 23, 59, tzinfo=UTC) for day in range(1, 32)]
    anchors += [datetime(2024, 2, 29, 12, tzinfo=UTC), datetime(2023, 12, 31, tzinfo=UTC)]
    longest = timedelta(0)
    for anchor in anchors:
        for _ in range(200):
            instant = anchor + timedelta(seconds=rng.randrange(-10**7, 3 * 10**8))
            start, end = periods.usage_period_containing(anchor, instant, interval)
            assert start <= instant < end
            longest = max(longest, instant - start)
    assert longest < services._LONGEST_PERIOD

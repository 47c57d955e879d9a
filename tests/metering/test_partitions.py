"""Events and charges partitioned by month on PostgreSQL: months created ahead (rows waiting in
the default partition moved into them), an event id unique across months, old months archived
to checked files and restored, and usage before the archive horizon closed for good.

The months used here are in 2024, far from any clock the suite runs under (it is also run with
the clock moved to 2027 and 2028), so their partitions exist only when a test makes them.
"""

import gzip
import hashlib
import threading
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, transaction
from django.db.migrations.recorder import MigrationRecorder

from accounts.models import Account
from metering import partitions
from metering.models import Charge, Event, EventKey, PeriodTally

from .helpers import ingest
from .test_usage_days import from_charges, from_counters

MARCH = datetime(2024, 3, 1, tzinfo=UTC)
APRIL = datetime(2024, 4, 1, tzinfo=UTC)
MAY = datetime(2024, 5, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def ticket(name: str, at: datetime, *, late_by: timedelta = timedelta(0)) -> list[dict]:
    """A customer message and an agent's reply an hour later: one billable ticket (H1)."""
    occurred = at - late_by
    return [
        {
            "id": f"{name}-c",
            "type": "message",
            "ticket": name,
            "occurred_at": occurred,
            "channel": "email",
            "author": "customer",
        },
        {
            "id": f"{name}-a",
            "type": "message",
            "ticket": name,
            "occurred_at": occurred + timedelta(hours=1),
            "channel": "email",
            "author": "agent",
        },
    ]


def rows_in(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")
        return cursor.fetchone()[0]


def exists(table: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [table])
        return cursor.fetchone()[0] is not None


def snapshot(table: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} ORDER BY id")
        return cursor.fetchall()


def make_months(*months: datetime) -> None:
    for month in months:
        for table in partitions.TABLES:
            partitions.partition_create(partitions.Partition(table, month.date()))


@pytest.fixture
def shop(make_account):
    # Subscribed before the events of 2024 it is sent (earlier events are refused).
    with time_machine.travel(datetime(2024, 1, 1, tzinfo=UTC), tick=False):
        return make_account(slug="shop")


@pytest.mark.django_db
def test_events_and_charges_are_partitioned_by_month_from_the_first_migration():
    # The months are those around the migration's own run, not the test's: under a moved clock
    # the suite may cross a month end between the two (beat's daily job then makes the new one).
    migrated = MigrationRecorder.Migration.objects.get(
        app="metering", name="0004_partition_by_month"
    ).applied
    for table in partitions.TABLES:
        assert partitions.is_partitioned(table)
        assert exists(f"{table}_default")
        months = {p.month for p in partitions.partitions_attached(table)}
        # The migration made its month, the one before and the next.
        assert {partitions.month_add(migrated, n).date() for n in range(-1, 2)} <= months


@pytest.mark.django_db
def test_an_event_id_is_a_duplicate_whatever_month_it_was_first_received(shop):
    make_months(MARCH, APRIL)
    first = ingest(shop, ticket("T1", MARCH + 10 * DAY), now=MARCH + 10 * DAY)
    again = ingest(shop, ticket("T1", MARCH + 10 * DAY), now=APRIL + 5 * DAY)
    assert (first.accepted, again.accepted, again.duplicates) == (2, 0, 2)
    assert rows_in("metering_event_p2024_03") == 2
    assert rows_in("metering_event_p2024_04") == 0
    assert EventKey.objects.filter(account=shop).count() == 2


@pytest.mark.django_db
def test_creating_a_month_moves_the_rows_waiting_in_the_default_partition(shop):
    ingest(shop, ticket("T1", MARCH + 2 * DAY), now=MARCH + 2 * DAY)
    assert rows_in("metering_event_default") >= 2  # no March partition yet
    counters = from_counters(shop)
    assert counters == from_charges(shop) and counters

    created = partitions.partitions_ensure(now=MARCH, behind=0, ahead=0)

    assert created == ["metering_event_p2024_03", "metering_charge_p2024_03"]
    assert rows_in("metering_event_p2024_03") == 2
    assert rows_in("metering_charge_p2024_03") == 1  # the billable ticket of March
    # Moved partition to partition: the per-day counters did not see a delete and an insert.
    assert from_counters(shop) == counters == from_charges(shop)
    assert partitions.partitions_ensure(now=MARCH, behind=0, ahead=0) == []


@pytest.mark.django_db
def test_a_unit_not_counted_is_stored_once_like_any_other():
    account = Account.objects.create(slug="plain", name="Plain")
    fields = {
        "account": account,
        "subject_kind": "ticket",
        "subject": "T",
        "meter": "helpdesk_tickets",
        "unit": 0,
        "status": "not_counted",
        "evaluated_at": MARCH,
        "recorded_at": MARCH,
    }
    Charge.objects.create(**fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        Charge.objects.create(**fields)  # no period: NULL does not make them distinct


@pytest.mark.django_db
def test_archiving_a_month_writes_checked_files_and_closes_its_usage(shop, tmp_path):
    make_months(MARCH, APRIL, MAY)
    ingest(shop, ticket("T1", MARCH + 3 * DAY), now=MARCH + 3 * DAY)
    ingest(shop, ticket("T2", APRIL + 3 * DAY), now=APRIL + 3 * DAY)
    # Received in April about February: a late unit of a period with no partition (default).
    ingest(shop, ticket("T3", APRIL + 4 * DAY, late_by=60 * DAY), now=APRIL + 4 * DAY)
    february = Charge.objects.get(account=shop, subject="T3")
    assert february.period_start == datetime(2024, 2, 1, tzinfo=UTC)

    archived = partitions.partitions_archive(before=APRIL.date(), directory=tmp_path)

    assert sorted((a.table, a.month, a.rows) for a in archived) == [
        ("metering_charge", MARCH.date(), 1),
        ("metering_event", MARCH.date(), 2),
    ]
    for record in archived:
        data = (tmp_path / f"{record.table}_p2024_03.csv.gz").read_bytes()
        assert record.sha256 == hashlib.sha256(data).hexdigest()
        lines = gzip.decompress(data).decode().splitlines()
        assert len(lines) == record.rows + 1  # a header, then the rows
    assert not exists("metering_event_p2024_03") and not exists("metering_charge_p2024_03")
    assert set(Event.objects.values_list("ticket", flat=True)) == {"T2", "T3"}
    assert not EventKey.objects.filter(event_id__startswith="T1").exists()
    assert partitions.archive_horizon() == APRIL

    # Usage before the horizon is closed: T3's February unit stays as it was when T3 moves on,
    # and a new late unit of February (T4) is not added.
    ingest(shop, [{**ticket("T3", MAY)[1], "id": "T3-a2"}], now=MAY + DAY)
    ingest(shop, ticket("T4", MAY + DAY, late_by=80 * DAY), now=MAY + DAY)
    kept = Charge.objects.get(account=shop, subject="T3")
    assert (kept.period_start, kept.evaluated_at) == (february.period_start, february.evaluated_at)
    assert not Charge.objects.filter(account=shop, subject="T4").exists()
    # The per-day counters keep the archived month: its usage still reads on the pages.
    archived_unit = (MARCH, "helpdesk_tickets", date(2024, 3, 4), "final")
    assert from_counters(shop) - from_charges(shop) == {archived_unit: 1}
    assert from_charges(shop) - from_counters(shop) == {}


@pytest.mark.django_db
def test_an_archived_month_is_restored_to_the_same_rows(shop, tmp_path):
    make_months(MARCH, APRIL)
    ingest(shop, ticket("T1", MARCH + 3 * DAY), now=MARCH + 3 * DAY)
    before = {table: snapshot(f"{table}_p2024_03") for table in partitions.TABLES}
    records = partitions.partitions_archive(before=APRIL.date(), directory=tmp_path)
    # A tally counted while March was away (its units not there): not to be trusted after.
    PeriodTally.objects.create(account_id=shop.pk, period_start=MARCH, units={}, stale=False)

    for record in records:
        partitions.partition_restore(record)

    assert {table: snapshot(f"{table}_p2024_03") for table in partitions.TABLES} == before
    assert PeriodTally.objects.get(account_id=shop.pk, period_start=MARCH).stale
    assert EventKey.objects.filter(account=shop).count() == 2
    assert partitions.archive_horizon() is None
    again = ingest(shop, ticket("T1", MARCH + 3 * DAY), now=APRIL + DAY)
    assert again.duplicates == 2  # the restored keys know the ids again


@pytest.mark.django_db
def test_a_restore_refuses_a_file_that_changed(shop, tmp_path):
    make_months(MARCH)
    ingest(shop, ticket("T1", MARCH + 3 * DAY), now=MARCH + 3 * DAY)
    record = next(
        r
        for r in partitions.partitions_archive(before=APRIL.date(), directory=tmp_path)
        if r.table == "metering_event"
    )
    with open(record.path, "ab") as file:
        file.write(b"tampered")
    with pytest.raises(RuntimeError, match="SHA-256"):
        partitions.partition_restore(record)


@pytest.mark.django_db
def test_the_command_lists_archives_and_restores(shop, tmp_path, capsys, settings):
    make_months(MARCH, APRIL)
    ingest(shop, ticket("T1", MARCH + 3 * DAY), now=MARCH + 3 * DAY)

    call_command("partitions", "status")
    assert "metering_event_p2024_03" in capsys.readouterr().out

    call_command("partitions", "archive", "--before", "2024-04", "--to", str(tmp_path), "--dry-run")
    out = capsys.readouterr().out
    assert "metering_event_p2024_03, metering_charge_p2024_03" in out
    assert exists("metering_event_p2024_03")  # a dry run changes nothing

    settings.PARTITION_ARCHIVE_DIR = ""
    with pytest.raises(CommandError, match="--to"):
        call_command("partitions", "archive", "--before", "2024-04")

    call_command("partitions", "archive", "--before", "2024-04-01", "--to", str(tmp_path))
    assert "archived metering_event 2024-03: 2 rows" in capsys.readouterr().out
    call_command("partitions", "status")
    assert "archived: metering_charge 2024-03: 1 rows" in capsys.readouterr().out

    call_command("partitions", "restore", "metering_event", "2024-03")
    assert "restored 2 rows of metering_event 2024-03" in capsys.readouterr().out
    with pytest.raises(CommandError, match="No archived metering_event for 2024-03"):
        call_command("partitions", "restore", "metering_event", "2024-03")


@pytest.mark.django_db
def test_the_daily_job_archives_past_the_retention_only_into_a_folder_it_is_given(
    shop, tmp_path, settings
):
    make_months(MARCH)
    ingest(shop, ticket("T1", MARCH + 3 * DAY), now=MARCH + 3 * DAY)
    settings.USAGE_RETENTION_MONTHS = 25
    later = partitions.month_add(MARCH, 26)  # March 2024 is then past the retention

    settings.PARTITION_ARCHIVE_DIR = ""
    done = partitions.partitions_maintain(now=later)
    assert not [line for line in done if line.startswith("archived")]
    assert exists("metering_event_p2024_03")
    assert "created metering_event_p2026_06" in done  # the month after `later`
    assert "analyzed metering_event, metering_charge" in done

    settings.PARTITION_ARCHIVE_DIR = str(tmp_path)
    done = partitions.partitions_maintain(now=later)
    assert "archived metering_event 2024-03: 2 rows" in done
    assert (tmp_path / "metering_event_p2024_03.csv.gz").exists()
    assert partitions.retention_horizon(later) == date(2024, 4, 1)


FAR = datetime(2031, 5, 1, tzinfo=UTC)


@pytest.mark.django_db(transaction=True)
def test_two_workers_creating_the_same_month_create_it_once():
    created, errors = [], []
    barrier = threading.Barrier(2)

    def create():
        try:
            barrier.wait()
            part = partitions.Partition("metering_event", FAR.date())
            created.append(partitions.partition_create(part))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=create) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert sorted(created) == [False, True]
    finally:
        with connection.cursor() as cursor:  # DDL outlives a transactional test's flush
            cursor.execute("DROP TABLE IF EXISTS metering_event_p2031_05")

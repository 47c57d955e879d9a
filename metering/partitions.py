"""Monthly partitions of the two big tables, on PostgreSQL.

`metering_event` is partitioned by the month of `received_at`, `metering_charge` by the month
of `period_start` (calendar months, UTC). Each table also has a default partition, which holds
what no month partition takes: charges with no period (verdicts not counted) and rows of a month
whose partition does not exist yet (a scheduler that stopped for months, a late unit of an old
period). Writes never fail for want of a partition.

- `partitions_ensure` (daily, `metering.partitions_maintain`) creates the months around now
  ahead of time, moving any rows the default partition holds for them.
- `partitions_archive` detaches the months before a horizon, writes each to a gzip'd CSV file
  with its row count and SHA-256 recorded (`ArchivedPartition`), and drops it. The events' keys
  of those months go with them. `partition_restore` attaches an archived month again.

Usage of a period before the archive horizon is closed for good: re-evaluation neither changes
nor adds charges there (`archive_horizon`, used by metering.services).
"""

import csv
import gzip
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from .models import ArchivedPartition
from .spans import spans_extend

TABLES = {"metering_event": "received_at", "metering_charge": "period_start"}
_NAME = re.compile(r"^(?P<table>metering_\w+?)_p(?P<year>\d{4})_(?P<month>\d{2})$")


@dataclass(frozen=True)
class Partition:
    table: str
    month: date  # first day

    @property
    def name(self) -> str:
        return f"{self.table}_p{self.month:%Y_%m}"

    @property
    def bounds(self) -> tuple[datetime, datetime]:
        start = datetime(self.month.year, self.month.month, 1, tzinfo=UTC)
        return start, month_add(start, 1)


def month_add(at: datetime | date, months: int) -> datetime:
    """The first instant (UTC) of the month `months` after the one containing `at`."""
    index = at.year * 12 + at.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def is_partitioned(table: str) -> bool:
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_partitioned_table WHERE partrelid = %s::regclass", [table])
        return cursor.fetchone() is not None


def partitions_attached(table: str) -> list[Partition]:
    """The month partitions attached to `table`, oldest first (the default one left out)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass",
            [table],
        )
        names = [row[0] for row in cursor.fetchall()]
    found = []
    for name in names:
        match = _NAME.match(name)
        if match and match["table"] == table:
            found.append(Partition(table, date(int(match["year"]), int(match["month"]), 1)))
    return sorted(found, key=lambda p: p.month)


def partitions_ensure(*, now: datetime | None = None, behind: int = 1, ahead: int = 1) -> list[str]:
    """Create the month partitions from `behind` months before now to `ahead` months after it,
    for both tables; return the names created. Safe to run concurrently and often.

    One month ahead, made daily, leaves four weeks to notice a stopped scheduler; more would
    only cost: every lookup by subject (re-evaluation's) probes each attached month's index.
    One behind: an account's current usage period mostly starts in the previous calendar month
    (periods run from the billing anchor), and its charges go by the period's start."""
    now = now or timezone.now()
    created = []
    for table in TABLES:
        if not is_partitioned(table):
            continue
        for offset in range(-behind, ahead + 1):
            month = month_add(now, offset).date()
            if partition_create(Partition(table, month)):
                created.append(Partition(table, month).name)
    return created


def partitions_missing(*, now: datetime | None = None) -> list[str]:
    """The partitions of the current and the next month not made yet, by name. Nothing fails
    without them (rows wait in the default partition), but beat's daily job should have made
    them: a name here means it has not run, or failed, and /readyz says so."""
    now = now or timezone.now()
    missing = []
    for table in TABLES:
        if not is_partitioned(table):
            continue
        attached = {p.month for p in partitions_attached(table)}
        for offset in (0, 1):
            month = month_add(now, offset).date()
            if month not in attached:
                missing.append(Partition(table, month).name)
    return missing


def partition_create(partition: Partition) -> bool:
    """Create one month partition, moving the rows the default partition holds for it.
    False when it already exists."""
    table = partition.table
    start, end = partition.bounds
    bound = "FOR VALUES FROM (%s) TO (%s)"
    with transaction.atomic(), connection.cursor() as cursor:
        # Serialises concurrent creators; a second one then finds the partition made.
        cursor.execute(f"LOCK TABLE {table} IN SHARE UPDATE EXCLUSIVE MODE")
        cursor.execute("SELECT to_regclass(%s)", [partition.name])
        if cursor.fetchone()[0] is not None:
            return False
        # Made apart and attached, which locks the parent far less than CREATE … PARTITION OF
        # (writes go on); rows waiting in the default partition for this month move with it,
        # partition to partition, so the parent's triggers (the per-day counters) see no change.
        cursor.execute(
            f"CREATE TABLE {partition.name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
        _move_from_default(cursor, partition)
        cursor.execute(
            f"ALTER TABLE {table} ATTACH PARTITION {partition.name} {bound}", [start, end]
        )
    return True


def retention_horizon(now: datetime | None = None) -> date:
    """The first day of the oldest month kept: USAGE_RETENTION_MONTHS before the current one."""
    return month_add(now or timezone.now(), -settings.USAGE_RETENTION_MONTHS).date()


def partitions_maintain(*, now: datetime | None = None) -> list[str]:
    """Beat's daily job: create the months ahead; with PARTITION_ARCHIVE_DIR set, archive the
    months past the retention. Returns what it did, a line each."""
    now = now or timezone.now()
    done = [f"created {name}" for name in partitions_ensure(now=now)]
    # Autovacuum analyzes the months but never the partitioned parents, whose statistics the
    # planner uses for joins (re-evaluation's loads and swaps): without them it guesses.
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(f"ANALYZE {table}")
    done.append("analyzed " + ", ".join(TABLES))
    if settings.PARTITION_ARCHIVE_DIR:
        before = retention_horizon(now)
        directory = Path(settings.PARTITION_ARCHIVE_DIR)
        done += [
            f"archived {record}"
            for record in partitions_archive(before=before, directory=directory)
        ]
    return done


def archive_horizon() -> datetime | None:
    """The end of the newest archived month still archived: usage before it is closed."""
    months = ArchivedPartition.objects.filter(restored_at=None).values_list("month", flat=True)
    newest = max(months, default=None)
    return month_add(newest, 1) if newest else None


def partitions_archive(*, before: date, directory: Path) -> list[ArchivedPartition]:
    """Archive every month partition of both tables that ends on or before `before`."""
    directory.mkdir(parents=True, exist_ok=True)
    archived = []
    for table in TABLES:
        for partition in partitions_attached(table):
            if partition.bounds[1].date() <= before:
                archived.append(partition_archive(partition, directory=directory))
    return archived


def partition_archive(partition: Partition, *, directory: Path) -> ArchivedPartition:
    """Detach one month, write it to `<directory>/<name>.csv.gz`, record it, drop it.

    The file is written and checked before the table is dropped, in one transaction with the
    detach: a failure anywhere leaves the month attached.
    """
    path = directory / f"{partition.name}.csv.gz"
    start, end = partition.bounds
    with transaction.atomic(), connection.cursor() as cursor:
        # Deferred foreign-key checks of rows written earlier in this transaction would stop
        # the DROP below; run them now.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"ALTER TABLE {partition.table} DETACH PARTITION {partition.name}")
        rows = _copy_out(cursor, partition.name, path)
        cursor.execute(f"SELECT count(*) FROM {partition.name}")
        if cursor.fetchone()[0] != rows:
            raise RuntimeError(f"{path}: {rows} rows written, the table has a different count")
        if partition.table == "metering_event":
            # An event id of an archived month may be stored again if it is ever sent again.
            cursor.execute(
                "DELETE FROM metering_event_key WHERE received_at >= %s AND received_at < %s",
                [start, end],
            )
        cursor.execute(f"DROP TABLE {partition.name}")
        record, _ = ArchivedPartition.objects.update_or_create(
            table=partition.table,
            month=partition.month,
            defaults={
                "rows": rows,
                "path": str(path),
                "sha256": _sha256(path),
                "archived_at": timezone.now(),
                "restored_at": None,
            },
        )
    return record


def partition_restore(record: ArchivedPartition) -> int:
    """Attach an archived month again from its file (checked against its SHA-256 first);
    returns the rows restored."""
    path = Path(record.path)
    if _sha256(path) != record.sha256:
        raise RuntimeError(f"{path} does not match the SHA-256 recorded when it was archived")
    partition = Partition(record.table, record.month)
    start, end = partition.bounds
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {partition.name} "
            f"(LIKE {record.table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
        with (
            gzip.open(path, "rb") as source,
            cursor.cursor.copy(f"COPY {partition.name} FROM STDIN (FORMAT csv, HEADER)") as copy,
        ):
            while chunk := source.read(1 << 16):
                copy.write(chunk)
        cursor.execute(f"SELECT count(*) FROM {partition.name}")
        rows = cursor.fetchone()[0]
        if rows != record.rows:
            raise RuntimeError(f"{path}: {rows} rows read, {record.rows} were archived")
        _move_from_default(cursor, partition)
        cursor.execute(
            f"ALTER TABLE {record.table} ATTACH PARTITION {partition.name} "
            "FOR VALUES FROM (%s) TO (%s)",
            [start, end],
        )
        if record.table == "metering_event":
            cursor.execute(
                "INSERT INTO metering_event_key (account_id, event_id, received_at) "
                f"SELECT account_id, event_id, received_at FROM {partition.name} "
                "ON CONFLICT DO NOTHING"
            )
            spans_extend(cursor, rows=partition.name)
        else:
            # The month's units are back: a close counts them again rather than trust a
            # tally written while they were away (PeriodTally).
            cursor.execute(
                "UPDATE metering_periodtally SET stale = TRUE "
                "WHERE period_start >= %s AND period_start < %s",
                [start, end],
            )
        record.restored_at = timezone.now()
        record.save(update_fields=["restored_at"])
    return rows


def _move_from_default(cursor, partition: Partition) -> None:
    """Move the rows the default partition holds for `partition`'s month into it (a table not
    attached yet): attaching refuses a month whose rows are still in the default."""
    column = TABLES[partition.table]
    cursor.execute(
        f"WITH moved AS (DELETE FROM {partition.table}_default "
        f"WHERE {column} >= %s AND {column} < %s RETURNING *) "
        f"INSERT INTO {partition.name} SELECT * FROM moved",
        list(partition.bounds),
    )


def _copy_out(cursor, table: str, path: Path) -> int:
    """COPY a table to a gzip'd CSV file with a header; returns the data rows written."""
    with (
        gzip.open(path, "wb") as target,
        cursor.cursor.copy(f"COPY {table} TO STDOUT (FORMAT csv, HEADER)") as copy,
    ):
        for chunk in copy:
            target.write(bytes(chunk))
    # Counted from the file, not from the stream: what is on disk is what was archived.
    with gzip.open(path, "rt", newline="") as written:
        return sum(1 for _ in csv.reader(written)) - 1


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

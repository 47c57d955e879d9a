"""The month partitions of events and charges: list, create ahead, archive, restore.

manage.py partitions status
manage.py partitions ensure [--ahead 1]
manage.py partitions archive --before 2025-01-01 --to /var/archive/billing [--dry-run]
manage.py partitions restore metering_event 2024-11
"""

from datetime import date
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from metering import partitions
from metering.models import ArchivedPartition


def _month(text: str) -> date:
    try:
        return date.fromisoformat(text if len(text) > 7 else f"{text}-01")
    except ValueError as exc:
        raise CommandError(f"{text!r} is not a date (YYYY-MM or YYYY-MM-DD)") from exc


class Command(BaseCommand):
    help = "List, create, archive or restore the month partitions of events and charges."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        actions.add_parser("status", help="Each table's partitions, rows and archives.")
        ensure = actions.add_parser("ensure", help="Create the months around now (as beat does).")
        ensure.add_argument("--ahead", type=int, default=1, help="Months ahead (default 1).")
        archive = actions.add_parser("archive", help="Detach, write and drop old months.")
        archive.add_argument(
            "--before",
            type=_month,
            help="Archive the months that end on or before this day (default: "
            "USAGE_RETENTION_MONTHS before the current month).",
        )
        archive.add_argument(
            "--to", type=Path, help="Folder for the files (default: PARTITION_ARCHIVE_DIR)."
        )
        archive.add_argument("--dry-run", action="store_true", help="Only say what would go.")
        restore = actions.add_parser("restore", help="Attach an archived month again.")
        restore.add_argument("table", choices=sorted(partitions.TABLES))
        restore.add_argument("month", type=_month)

    def handle(self, *args, action, **options):
        if not all(partitions.is_partitioned(table) for table in partitions.TABLES):
            raise CommandError(
                f"Partitions exist on PostgreSQL only; this database is {connection.vendor}."
            )
        getattr(self, f"_{action}")(**options)

    def _status(self, **options):
        for table in partitions.TABLES:
            self.stdout.write(f"{table} (by month of {partitions.TABLES[table]}):")
            for partition in [*partitions.partitions_attached(table), None]:
                name = partition.name if partition else f"{table}_default"
                with connection.cursor() as cursor:
                    cursor.execute(f"SELECT count(*) FROM {name}")  # names from the catalog
                    rows = cursor.fetchone()[0]
                self.stdout.write(f"  {name:<32} {rows:>12,} rows")
        for record in ArchivedPartition.objects.order_by("table", "month"):
            state = f"restored {record.restored_at:%Y-%m-%d}" if record.restored_at else "archived"
            self.stdout.write(f"{state}: {record} in {record.path}")

    def _ensure(self, *, ahead, **options):
        created = partitions.partitions_ensure(ahead=ahead)
        self.stdout.write("created: " + (", ".join(created) or "none (all present)"))

    def _archive(self, *, before, to, dry_run, **options):
        before = before or partitions.retention_horizon()
        directory = to or (
            Path(settings.PARTITION_ARCHIVE_DIR) if settings.PARTITION_ARCHIVE_DIR else None
        )
        if directory is None:
            raise CommandError("Say where the files go: --to FOLDER or PARTITION_ARCHIVE_DIR.")
        due = [
            p
            for table in partitions.TABLES
            for p in partitions.partitions_attached(table)
            if p.bounds[1].date() <= before
        ]
        if dry_run or not due:
            names = ", ".join(p.name for p in due) or "nothing"
            self.stdout.write(f"months ending on or before {before}: {names}")
            return
        for record in partitions.partitions_archive(before=before, directory=directory):
            self.stdout.write(f"archived {record} to {record.path} (sha256 {record.sha256[:12]}…)")

    def _restore(self, *, table, month, **options):
        record = ArchivedPartition.objects.filter(
            table=table, month=month.replace(day=1), restored_at=None
        ).first()
        if record is None:
            raise CommandError(f"No archived {table} for {month:%Y-%m}.")
        rows = partitions.partition_restore(record)
        self.stdout.write(f"restored {rows:,} rows of {table} {month:%Y-%m} from {record.path}")

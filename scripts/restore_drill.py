"""The restore drill: back up a portal database with pg_dump, restore it into an empty database
with pg_restore, and compare every table's row count (and the invoices' totals) between the two.

    python scripts/restore_drill.py --source postgres://postgres@127.0.0.1:5432/portal \
        --target postgres://postgres@127.0.0.1:5432/portal_restored [--dump var/portal.dump]

The target database is dropped and made anew. Exit code 1 when anything differs. A backup that
was never restored is a hope, not a backup: run this against a copy of production's nightly dump
on a schedule (docs/operations.md, "Backups").
"""

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

# Figures that must survive a restore exactly, beside the row counts.
CHECKSUMS = {
    "invoice totals": "SELECT coalesce(sum(total_minor), 0) FROM billing_invoice",
    "last invoice number": "SELECT coalesce(max(number), '') FROM billing_invoice",
    "final charges": "SELECT count(*) FROM metering_charge WHERE status = 'final'",
    "latest event": "SELECT coalesce(max(occurred_at)::text, '') FROM metering_event",
}


def tables(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
            )
        ]
        counts = {}
        for name in names:
            counts[name] = conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]  # noqa: S608 - names from pg_tables
        for label, query in CHECKSUMS.items():
            counts[label] = conn.execute(query).fetchone()[0]
    return counts


def run(command: list[str]) -> None:
    """A PostgreSQL client tool, found on PATH (the same major version as the server)."""
    tool = shutil.which(command[0])
    if tool is None:
        sys.exit(f"{command[0]} is not on PATH: install the PostgreSQL client tools.")
    subprocess.run([tool, *command[1:]], check=True)  # noqa: S603 - our own arguments


def database_recreate(url: str) -> None:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--dump", type=Path, default=Path("var/portal.dump"))
    args = parser.parse_args()
    if urlsplit(args.source).path == urlsplit(args.target).path:
        sys.exit("The target must be another database: it is dropped first.")

    args.dump.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # Custom format: compressed, and pg_restore can restore it in parallel or table by table.
    run(["pg_dump", "--format=custom", "--no-owner", f"--file={args.dump}", args.source])
    dumped = time.perf_counter()
    database_recreate(args.target)
    run(["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={args.target}", str(args.dump)])
    restored = time.perf_counter()

    before, after = tables(args.source), tables(args.target)
    differences = 0
    print(f"{'table':<40}{'source':>26}{'restored':>26}")
    for name in sorted(before.keys() | after.keys()):
        mark = "" if before.get(name) == after.get(name) else "   DIFFERS"
        differences += bool(mark)
        print(f"{name:<40}{before.get(name, '-')!s:>26}{after.get(name, '-')!s:>26}{mark}")
    size = args.dump.stat().st_size
    print(
        f"\ndump {size / 1e6:.1f} MB in {dumped - started:.1f} s, restore in "
        f"{restored - dumped:.1f} s; {len(before)} figures compared, {differences} differ"
    )
    sys.exit(1 if differences else 0)


if __name__ == "__main__":
    main()

"""What every bench needs to be trusted: its databases named from the environment and dropped
when done, the median of several runs, and CPU time split by component (the processes a bench
starts, PostgreSQL's backends serving its database, the bench's own process), read from /proc.

CPU time, not wall time, is what tells the components apart on a 2-core machine: a component
that waits costs nothing, and the figures of one run add up to what the machine spent on it.
"""

import os
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence

PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
_TICK = os.sysconf("SC_CLK_TCK")


def database_create(name: str, *, template: str | None = None) -> None:
    """Make `name` anew (from `template` when given: a prepared database copied in seconds)."""
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        # FILE_COPY: the template's files copied whole, seconds even for gigabytes (the
        # default strategy writes every block to the WAL).
        copy = f" TEMPLATE {template} STRATEGY FILE_COPY" if template else ""
        conn.execute(f"CREATE DATABASE {name}{copy}")


def database_drop(name: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _processes() -> dict[int, tuple[int, float]]:
    """{pid: (parent pid, CPU seconds so far)} of every process alive now."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                # The name (field 2) may hold spaces: the fields after its closing parenthesis.
                fields = stat.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue  # ended while we looked
        found[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK)
    return found


def tree_cpu(root: int) -> float:
    """CPU seconds spent so far by a process and its live descendants (gunicorn's or Celery's
    workers)."""
    processes = _processes()
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (parent, _) in processes.items():
        children[parent].append(pid)
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        if pid in processes:
            total += processes[pid][1]
            stack.extend(children[pid])
    return total


def backends_cpu(database: str) -> dict[int, float]:
    """{pid: CPU seconds} of PostgreSQL's backends connected to `database` now (their command
    line names the database)."""
    found = {}
    for pid, (_, cpu) in _processes().items():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                words = cmdline.read().replace(b"\0", b" ").decode(errors="replace").split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if len(words) >= 3 and words[0] == "postgres:" and database in words[1:4]:
            found[pid] = cpu
    return found


def backends_spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds the database's backends spent between two snapshots (a backend that
    started in between counts whole; one that ended in between is lost: the benches keep
    their connections open, so only their own short probes end)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def median_run(runs: Sequence[dict], key: str) -> dict:
    """The run whose `key` is the median (the middle one of three): its figures are printed
    together, so that they stay consistent with each other."""
    ordered = sorted(runs, key=lambda run: run[key])
    return ordered[(len(ordered) - 1) // 2]


def print_runs(
    runs: Sequence[dict], columns: Iterable[tuple[str, str, Callable[[float], str]]], key: str
) -> None:
    """One line per run and one for the median run by `key`: (heading, field, format)."""
    columns = list(columns)
    widths = [max(len(heading), 12) for heading, _, _ in columns]
    print("  ".join(f"{heading:>{w}}" for (heading, _, _), w in zip(columns, widths, strict=True)))
    for label, run in [
        *((f"run {n}", r) for n, r in enumerate(runs, 1)),
        ("median", median_run(runs, key)),
    ]:
        cells = [label if field == "run" else fmt(run[field]) for _, field, fmt in columns]
        print("  ".join(f"{cell:>{w}}" for cell, w in zip(cells, widths, strict=True)))
    if len(runs) >= 2:
        values = [run[key] for run in runs]
        spread = (max(values) - min(values)) / statistics.median(values)
        print(f"spread of {key} between runs: {spread:.0%} of the median")

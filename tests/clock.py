"""`--clock`: run the whole suite with the wall clock moved, to prove no test depends on today.

Billing code breaks at month ends, leap days and year ends, and a test that mixes frozen time with
the real clock (or hard-codes a date that will pass) breaks on some future morning. CI runs the
suite once on the real clock and again with `--clock` at such instants; the clock keeps ticking
from there, and a test's own `time_machine.travel` nests inside it and returns to it.
"""

from datetime import UTC, datetime

import time_machine

_travel = None


def pytest_addoption(parser):
    parser.addoption(
        "--clock",
        metavar="ISO-8601",
        default=None,
        help="move the wall clock to this UTC instant for the whole run (it keeps ticking)",
    )


def pytest_configure(config):
    global _travel
    value = config.getoption("--clock")
    if not value:
        return
    instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    # Started before collection, so module-level `now()` calls see the moved clock too.
    _travel = time_machine.travel(instant, tick=True)
    _travel.start()


def pytest_report_header(config):
    value = config.getoption("--clock")
    return f"clock moved to {value} (ticking)" if value else None


def pytest_unconfigure(config):
    global _travel
    if _travel is not None:
        _travel.stop()
        _travel = None

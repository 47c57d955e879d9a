"""The chaos suite: each case runs a number of repetitions (a fast slice by default, the full
counts under `CHAOS_SCALE=full`, which `make chaos` sets; `CHAOS_<CASE>=n` sets one case) and
reports its counts at the end of the run, whatever `-s` says."""

import os

import pytest

RESULTS: list[str] = []


def repetitions(case: str, *, fast: int, full: int) -> int:
    """How many times a case runs now."""
    own = os.environ.get(f"CHAOS_{case.upper()}")
    if own:
        return int(own)
    return full if os.environ.get("CHAOS_SCALE") == "full" else fast


@pytest.fixture
def chaos_report():
    def record(case: str, **counts) -> None:
        RESULTS.append(f"{case}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))

    return record


def pytest_terminal_summary(terminalreporter):
    if RESULTS:
        terminalreporter.section("chaos counts")
        for line in RESULTS:
            terminalreporter.write_line(line)

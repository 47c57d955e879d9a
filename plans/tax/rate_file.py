"""Reading a rate file for `manage.py tax_rates_load` (pure; imports no Django).

A file has the shape of the packaged ones (plans/tax/eu_rates.json, us_rates.json):
`{"rates": {place: [{"effective_from", "standard" | "rate", "source", "note"?}, ...]}}`. An
entry's value key says what it is: `standard` is an EU member state's standard VAT rate, `rate`
a US state's sales tax rate. (The code alone cannot say: DE is Germany and Delaware.)

Every entry is checked and every problem reported, each with the entry's place in the file, so
that one run shows the whole list; the command loads nothing from a file with a problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from .rates import EU_MEMBER_STATES, US_STATES

__all__ = ["EU_VAT", "US_STATE", "RateFileEntry", "rate_file_read"]

EU_VAT = "eu_vat"
US_STATE = "us_state"

# The value key of each kind of entry, as the packaged files write it.
_VALUE_KEYS = {"standard": EU_VAT, "rate": US_STATE}
_PLACES = {EU_VAT: EU_MEMBER_STATES, US_STATE: US_STATES}
_PLACE_NAMES = {EU_VAT: "an EU member state", US_STATE: "a US state"}


@dataclass(frozen=True)
class RateFileEntry:
    """One valid entry: a rate in percent for `code`, in force from `effective_from`."""

    kind: str
    code: str
    effective_from: date
    rate: Decimal
    source: str
    note: str = ""
    where: str = ""  # its place in the file, e.g. rates.FR[1], for the command's report


def rate_file_read(data: Any) -> tuple[tuple[RateFileEntry, ...], tuple[str, ...]]:
    """The file's entries and its problems (`rates.FR[1]: <reason>`); entries are only
    usable when there is no problem at all."""
    rates = data.get("rates") if isinstance(data, Mapping) else None
    if not isinstance(rates, Mapping) or not rates:
        return (), ('the file has no "rates" object of places and their entries',)
    entries: list[RateFileEntry] = []
    problems: list[str] = []
    seen: set[tuple[str, str, date]] = set()
    for code, rows in rates.items():
        if not isinstance(rows, list):
            problems.append(f"rates.{code}: a list of entries is expected")
            continue
        for index, row in enumerate(rows):
            where = f"rates.{code}[{index}]"
            entry, reasons = _entry(code=str(code), row=row, where=where)
            problems.extend(f"{where}: {reason}" for reason in reasons)
            if entry is None:
                continue
            key = (entry.kind, entry.code, entry.effective_from)
            if key in seen:
                # Two rates from one date: which one applies would depend on the order.
                problems.append(f"{where}: a second rate from {entry.effective_from.isoformat()}")
                continue
            seen.add(key)
            entries.append(entry)
    return tuple(entries), tuple(problems)


def _entry(*, code: str, row: Any, where: str) -> tuple[RateFileEntry | None, list[str]]:
    if not isinstance(row, Mapping):
        return None, ["an entry is an object"]
    kinds = [kind for key, kind in _VALUE_KEYS.items() if key in row]
    if len(kinds) != 1:
        return None, ['give either "standard" (EU VAT) or "rate" (US sales tax), not both']
    kind = kinds[0]
    reasons = []
    if code not in _PLACES[kind]:
        reasons.append(f"{code!r} is not {_PLACE_NAMES[kind]} (two capital letters)")
    rate = _rate(row["standard" if kind == EU_VAT else "rate"], reasons)
    effective_from = _date(row.get("effective_from"), reasons)
    source = _text(row.get("source"))
    if not source:
        reasons.append("the source is missing: every rate names where it comes from")
    note = _text(row.get("note", ""))
    if note is None:
        reasons.append("the note is text")
    if reasons or rate is None or effective_from is None or not source or note is None:
        return None, reasons
    return (
        RateFileEntry(
            kind=kind,
            code=code,
            effective_from=effective_from,
            rate=rate,
            source=source,
            note=note,
            where=where,
        ),
        [],
    )


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) else None


def _rate(value: Any, reasons: list[str]) -> Decimal | None:
    # Written as a string, as in the packaged files: a JSON number (25.5) is read as a float.
    if not isinstance(value, str):
        reasons.append(f'the rate is written as a string, e.g. "25.5", not {value!r}')
        return None
    try:
        rate = Decimal(value)
    except InvalidOperation:
        reasons.append(f"the rate {value!r} is not a number")
        return None
    if not rate.is_finite() or not Decimal(0) <= rate < Decimal(100):
        reasons.append(f"the rate {value} is not a percentage from 0 to under 100")
        return None
    if rate.as_tuple().exponent < -3:  # type: ignore[operator]
        reasons.append(f"the rate {value} has more than 3 decimals")
        return None
    return rate


def _date(value: Any, reasons: list[str]) -> date | None:
    # Exactly YYYY-MM-DD: fromisoformat alone also takes 20270101 and week dates.
    if isinstance(value, str) and len(value) == 10:
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    reasons.append(f"effective_from {value!r} is not a date (YYYY-MM-DD)")
    return None

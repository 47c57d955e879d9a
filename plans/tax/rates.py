"""Tax rates as data with effective dates: EU standard VAT rates and the US states' sales tax
rates the seller collects (pure; reads its two JSON files, imports no Django).

A rate is looked up for the date of supply, never "today": an invoice for October 2025 in
Romania is taxed at the rate in force in October 2025 whatever day it is issued, and a rate
change is one more entry in the file (with its source), never a change of code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import cache
from pathlib import Path

__all__ = [
    "EU_MEMBER_STATES",
    "US_STATES",
    "RateEntry",
    "RateTable",
    "UnknownRate",
    "eu_rates",
    "rate_for",
    "us_rates",
]

HERE = Path(__file__).resolve().parent

# ISO 3166-1 codes of the 27 member states. VAT ids write Greece as EL; accounts store GR.
EU_MEMBER_STATES = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "CY",
        "CZ",
        "DE",
        "DK",
        "EE",
        "ES",
        "FI",
        "FR",
        "GR",
        "HR",
        "HU",
        "IE",
        "IT",
        "LT",
        "LU",
        "LV",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SE",
        "SI",
        "SK",
    ]
)

# The 50 states and the District of Columbia: where a seller may register for sales tax.
US_STATES = frozenset(
    [
        "AL",
        "AK",
        "AZ",
        "AR",
        "CA",
        "CO",
        "CT",
        "DE",
        "DC",
        "FL",
        "GA",
        "HI",
        "ID",
        "IL",
        "IN",
        "IA",
        "KS",
        "KY",
        "LA",
        "ME",
        "MD",
        "MA",
        "MI",
        "MN",
        "MS",
        "MO",
        "MT",
        "NE",
        "NV",
        "NH",
        "NJ",
        "NM",
        "NY",
        "NC",
        "ND",
        "OH",
        "OK",
        "OR",
        "PA",
        "RI",
        "SC",
        "SD",
        "TN",
        "TX",
        "UT",
        "VT",
        "VA",
        "WA",
        "WV",
        "WI",
        "WY",
    ]
)


class UnknownRate(LookupError):
    """No rate is known for that place on that date: refused rather than guessed at 0 %."""


@dataclass(frozen=True)
class RateEntry:
    """One rate in percent, in force from `effective_from` until the next entry's date."""

    effective_from: date
    rate: Decimal
    source: str


@dataclass(frozen=True)
class RateTable:
    """Rates per place (a country or a US state), each place's entries sorted by date."""

    entries: Mapping[str, tuple[RateEntry, ...]]

    def rate_on(self, place: str, on: date) -> RateEntry:
        """The entry in force for `place` on `on`."""
        found = None
        for entry in self.entries.get(place.upper(), ()):
            if entry.effective_from <= on:
                found = entry
        if found is None:
            raise UnknownRate(f"no tax rate is known for {place!r} on {on.isoformat()}")
        return found

    def places(self) -> frozenset[str]:
        return frozenset(self.entries)


def _decimal(text: object, where: str) -> Decimal:
    # Rates are written as strings in the files: a float (25.5) would be read through binary.
    if not isinstance(text, str):
        raise ValueError(f'{where}: a rate is written as a string, e.g. "25.5", not {text!r}')
    rate = Decimal(text)
    if not Decimal(0) <= rate < Decimal(100):
        raise ValueError(f"{where}: {rate} is not a percentage")
    return rate


def table_from_data(data: Mapping[str, Sequence[Mapping[str, str]]], *, key: str) -> RateTable:
    """Build a table from `{place: [{effective_from, <key>, source}, ...]}` (the files' shape),
    refusing a rate without a source or two entries on one date."""
    entries: dict[str, tuple[RateEntry, ...]] = {}
    for place, rows in data.items():
        parsed = []
        for row in rows:
            where = f"{place} {row.get('effective_from')}"
            if not row.get("source"):
                raise ValueError(f"{where}: every rate names its source")
            parsed.append(
                RateEntry(
                    effective_from=date.fromisoformat(row["effective_from"]),
                    rate=_decimal(row[key], where),
                    source=row["source"],
                )
            )
        parsed.sort(key=lambda entry: entry.effective_from)
        dates = [entry.effective_from for entry in parsed]
        if len(set(dates)) != len(dates):
            raise ValueError(f"{place}: two rates start on the same date")
        entries[place.upper()] = tuple(parsed)
    return RateTable(entries=entries)


@cache
def eu_rates() -> RateTable:
    """The EU standard rates of plans/tax/eu_rates.json."""
    data = json.loads((HERE / "eu_rates.json").read_text(encoding="utf-8"))
    table = table_from_data(data["rates"], key="standard")
    missing = EU_MEMBER_STATES - table.places()
    if missing:
        raise ValueError(f"eu_rates.json has no rate for {sorted(missing)}")
    return table


@cache
def us_rates() -> RateTable:
    """The US state rates of plans/tax/us_rates.json (kept by the operator)."""
    data = json.loads((HERE / "us_rates.json").read_text(encoding="utf-8"))
    return table_from_data(data["rates"], key="rate")


def rate_for(country: str, on_date: date, *, table: RateTable | None = None) -> Decimal:
    """The EU standard VAT rate (percent) of `country` on `on_date`, from `table` (the
    database's, plans.selectors.tax_rate_tables) or else the packaged file."""
    if country.upper() not in EU_MEMBER_STATES:
        raise UnknownRate(f"{country!r} is not an EU member state")
    return (table or eu_rates()).rate_on(country, on_date).rate

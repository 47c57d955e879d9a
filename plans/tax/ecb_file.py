"""Reading the ECB's daily reference rates file (pure; imports no Django).

The format is ECB's eurofxref-daily.xml (https://www.ecb.europa.eu/stats/eurofxref/):

    <gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01"
                     xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
      <Cube><Cube time="2026-12-04"><Cube currency="USD" rate="1.0856"/>…</Cube></Cube>
    </gesmes:Envelope>

a rate being units of the currency for one euro. The 90-day and historical files have the same
shape with more days, and are read the same way. Parsed with defusedxml (fpdf2 depends on it):
the file comes over the network. Every problem is reported; a file with one loads nothing.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation

from defusedxml import ElementTree  # type: ignore[import-untyped]

from .national import EcbRate

__all__ = ["EcbFileError", "ecb_file_read"]

_NS = "{http://www.ecb.int/vocabulary/2002-08-01/eurofxref}"
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class EcbFileError(ValueError):
    """Not a file of ECB reference rates, or one with wrong entries (each listed)."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)


def ecb_file_read(content: bytes | str) -> tuple[EcbRate, ...]:
    """Every rate of every day in the file, or EcbFileError naming each problem."""
    try:
        root = ElementTree.fromstring(content)
    except Exception as exc:  # ParseError, and defusedxml's refusals (entities, DTDs)
        raise EcbFileError([f"not an ECB rates file: {exc}"]) from exc
    days = [cube for cube in root.iter(f"{_NS}Cube") if "time" in cube.attrib]
    if not days:
        raise EcbFileError(['no <Cube time="…"> day of rates in the file'])
    rates: list[EcbRate] = []
    problems: list[str] = []
    seen: set[tuple[date, str]] = set()
    for day in days:
        time = day.attrib["time"]
        try:
            published_on = date.fromisoformat(time)
        except ValueError:
            problems.append(f"Cube time={time!r}: not a YYYY-MM-DD date")
            continue
        entries = [cube for cube in day if cube.tag == f"{_NS}Cube"]
        if not entries:
            problems.append(f"{time}: no rate")
        for entry in entries:
            currency = entry.attrib.get("currency", "")
            text = entry.attrib.get("rate", "")
            where = f"{time} {currency or '(no currency)'}"
            if not _CURRENCY.match(currency):
                problems.append(f"{where}: a currency is three capital letters")
                continue
            try:
                value = Decimal(text)
            except InvalidOperation:
                value = Decimal(0)
            if not value.is_finite() or value <= 0:
                problems.append(f"{where}: rate {text!r} is not a positive number")
                continue
            if -int(value.as_tuple().exponent) > 6 or value >= 10**9:
                problems.append(f"{where}: rate {text!r} has more than 6 decimals or is too big")
                continue
            if (published_on, currency) in seen:
                problems.append(f"{where}: given twice")
                continue
            seen.add((published_on, currency))
            rates.append(EcbRate(currency=currency, units_per_eur=value, published_on=published_on))
    if problems:
        raise EcbFileError(problems)
    return tuple(rates)

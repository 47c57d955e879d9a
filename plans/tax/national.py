"""VAT stated in the seller's national currency (pure; no Django import).

Article 230 of Directive 2006/112/EC: when an invoice is in another currency than the member
state's, the VAT payable is also expressed in the national currency, converted at the latest
rate the European Central Bank published (or the customs rate) at the chargeable event, here
the issue date. We state it for sellers of the euro area only (docs/tax.md, "VAT in euros").

ECB's reference rates are units of a currency for one euro (1 EUR = 1.0856 USD), so a tax of
65.80 USD is 65.80 / 1.0856 = 60.6116… → 60.61 EUR. Each rate's tax is converted and rounded
half up once, the total is the sum of the rows (as the breakdown's tax is). A credit note
converts at its invoice's frozen rate, and like its tax (plans.tax.arithmetic.credit_note_tax)
as the euros of everything credited so far less those credited before: crediting an invoice
whole, in one note or in several, gives back exactly the euros it stated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from plans.money import currency_exponent, format_money, round_minor

from .arithmetic import TaxBreakdown
from .decision import TaxDecision, Treatment

__all__ = [
    "EURO_AREA",
    "RATE_MAX_AGE",
    "EcbRate",
    "NationalVat",
    "credit_note_national_vat",
    "national_currency",
    "national_vat",
    "rate_usable",
    "states_vat",
    "to_national_minor",
]

# The member states whose currency is the euro (Bulgaria since 2026-01-01, Croatia since
# 2023-01-01). The other member states' sellers (PL, SE, CZ, …) are out of scope: their
# national currency is not the ECB's base, and we state nothing for them.
EURO_AREA = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "CY",
        "DE",
        "EE",
        "ES",
        "FI",
        "FR",
        "GR",
        "HR",
        "IE",
        "IT",
        "LT",
        "LU",
        "LV",
        "MT",
        "NL",
        "PT",
        "SI",
        "SK",
    ]
)
# The ECB publishes on TARGET working days: the longest gap (Easter, Christmas to New Year) is
# five days. A rate older than this at issue means our daily load has stopped, and an old rate
# is not "the latest published": the invoice says the rate is unavailable instead.
RATE_MAX_AGE = timedelta(days=10)
# The treatments that charge VAT (any rate); reverse charge, outside the EU and US sales tax
# charge none, so there is no VAT payable to state.
_VAT_CHARGED = frozenset({Treatment.DOMESTIC, Treatment.OSS})


@dataclass(frozen=True)
class EcbRate:
    """One ECB euro reference rate: `units_per_eur` of `currency` for 1 EUR, published on."""

    currency: str
    units_per_eur: Decimal
    published_on: date


@dataclass(frozen=True)
class NationalVat:
    """The VAT of a document in the national currency, frozen at issue with the rate used.
    `rate` None: no rate was known at issue ("VAT in EUR: rate unavailable")."""

    currency: str  # the national currency, EUR
    rate: EcbRate | None
    per_rate: tuple[tuple[str, int], ...] = ()  # (the breakdown row's label, its tax in EUR)
    tax_minor: int = 0

    def negative(self) -> NationalVat:
        """The same euros given back: a note that gives an invoice's whole VAT back."""
        rows = tuple((label, -tax) for label, tax in self.per_rate)
        return NationalVat(self.currency, self.rate, rows, -self.tax_minor)

    def sentence(self) -> str:
        """As the PDF and the Invoices tab print it."""
        if self.rate is None:
            return f"VAT in {self.currency}: rate unavailable"
        units = format(self.rate.units_per_eur.normalize(), "f")
        return (
            f"VAT due in {self.currency}: {format_money(self.tax_minor, self.currency)} "
            f"(ECB rate 1 {self.currency} = {units} {self.rate.currency} "
            f"of {self.rate.published_on.isoformat()})"
        )

    def as_data(self) -> dict[str, Any]:
        """JSON-ready, frozen in the invoice's tax decision (the rate as a string)."""
        rate = self.rate
        return {
            "currency": self.currency,
            "rate": None
            if rate is None
            else {
                "currency": rate.currency,
                "units_per_eur": str(rate.units_per_eur),
                "published_on": rate.published_on.isoformat(),
            },
            "per_rate": [{"label": label, "tax_minor": tax} for label, tax in self.per_rate],
            "tax_minor": self.tax_minor,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> NationalVat:
        rate = data.get("rate")
        return cls(
            currency=data["currency"],
            rate=None
            if rate is None
            else EcbRate(
                currency=rate["currency"],
                units_per_eur=Decimal(rate["units_per_eur"]),
                published_on=date.fromisoformat(rate["published_on"]),
            ),
            per_rate=tuple((row["label"], row["tax_minor"]) for row in data["per_rate"]),
            tax_minor=data["tax_minor"],
        )


def rate_usable(rate: EcbRate | None, *, on: date) -> EcbRate | None:
    """The latest rate published on or before `on` (the caller's pick), if it is recent
    enough to be the latest ECB published: within RATE_MAX_AGE."""
    if rate is None or rate.published_on > on or on - rate.published_on > RATE_MAX_AGE:
        return None
    return rate


def national_currency(seller_country: str) -> str | None:
    """The seller's national currency when we state VAT in it: EUR in the euro area, else
    None (out of scope)."""
    return "EUR" if seller_country.upper() in EURO_AREA else None


def states_vat(*, decision: TaxDecision, seller_country: str, currency: str) -> bool:
    """Whether an invoice of this decision, in `currency`, states its VAT in the national
    currency too: VAT charged, by a euro-area seller, in another currency than the euro."""
    national = national_currency(seller_country)
    return (
        national is not None
        and currency != national
        and decision.treatment in _VAT_CHARGED
        and bool(decision.rates)
    )


def to_national_minor(tax_minor: int, *, currency: str, rate: EcbRate, national: str) -> int:
    """`tax_minor` of `currency` in minor units of `national`, rounded half up once."""
    if rate.units_per_eur <= 0:
        raise ValueError(f"an exchange rate is positive, not {rate.units_per_eur}")
    scale = Fraction(10) ** (currency_exponent(national) - currency_exponent(currency))
    return round_minor(Fraction(tax_minor) * scale / Fraction(rate.units_per_eur))


def national_vat(
    *, breakdown: TaxBreakdown, currency: str, rate: EcbRate | None, national: str = "EUR"
) -> NationalVat:
    """An invoice's VAT in `national`, rate by rate; `rate` None when none was known."""
    if rate is None:
        return NationalVat(currency=national, rate=None)
    if rate.currency != currency:
        raise ValueError(f"a {rate.currency} rate cannot convert {currency}")
    rows = tuple(
        (
            row.rate.label,
            to_national_minor(row.tax_minor, currency=currency, rate=rate, national=national),
        )
        for row in breakdown.per_rate
    )
    return NationalVat(national, rate, rows, sum(tax for _, tax in rows))


def credit_note_national_vat(
    *,
    invoice: NationalVat,
    invoice_currency: str,
    tax_before: Sequence[int],
    tax_after: Sequence[int],
    labels: Sequence[str],
) -> NationalVat:
    """A credit note's VAT in the national currency, at its invoice's frozen rate (negative).

    `tax_before` and `tax_after` are, per breakdown row of the invoice, the tax credited by the
    notes before this one and with it (positive): the note states the euros of the second less
    those of the first."""
    rate = invoice.rate
    if rate is None:
        return NationalVat(currency=invoice.currency, rate=None)

    def euros(tax: int) -> int:
        return to_national_minor(
            tax, currency=invoice_currency, rate=rate, national=invoice.currency
        )

    rows = tuple(
        (label, -(euros(after) - euros(before)))
        for label, before, after in zip(labels, tax_before, tax_after, strict=True)
    )
    return NationalVat(invoice.currency, rate, rows, sum(tax for _, tax in rows))

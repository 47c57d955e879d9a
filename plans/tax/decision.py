"""Which tax an invoice carries: the decision tree of docs/tax.md (pure; no Django import).

Plain values in (the seller, the buyer as we know them at issue, the channel, the date of
supply, the EU and US rate tables), one frozen `TaxDecision` out. The decision is made once,
when an invoice is issued, and stored with it; a credit note reuses its invoice's decision,
never a new one, so a VAT id validated (or a rate changed) later cannot change what was
invoiced.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Any

from .rates import EU_MEMBER_STATES, RateTable, rate_for, us_rates

__all__ = [
    "BuyerTax",
    "SellerTax",
    "TaxDecision",
    "TaxRate",
    "Treatment",
    "VatIdStatus",
    "tax_decide",
]

ARTICLE_196 = (
    "Reverse charge: VAT to be accounted for by the customer "
    "(Article 196 of Directive 2006/112/EC)."
)
OUTSIDE_EU = (
    "VAT not applicable: services supplied to a customer established outside the EU "
    "(Articles 44 and 59 of Directive 2006/112/EC)."
)
OSS = "VAT of the customer's EU country, declared through the One-Stop Shop (OSS)."
SHOPIFY = "Billed through Shopify: Shopify invoices the tax on this charge."


class Treatment(StrEnum):
    DOMESTIC = "domestic"
    REVERSE_CHARGE = "reverse_charge"
    OSS = "oss"
    OUTSIDE_EU = "outside_eu"
    US_SALES_TAX = "us_sales_tax"
    US_NOT_REGISTERED = "us_not_registered"
    SHOPIFY_CHANNEL = "shopify_channel"


class VatIdStatus(StrEnum):
    """What we know of a buyer's VAT id (Account.tax_id_status)."""

    PENDING = "pending"  # checked offline, VIES not asked yet
    VALID = "valid"  # VIES said valid (the last good answer is kept through VIES outages)
    INVALID = "invalid"
    UNAVAILABLE = "unavailable"  # VIES could not answer and there is no earlier good answer
    UNCHECKED = "unchecked"  # no VAT id, or never checked


@dataclass(frozen=True)
class SellerTax:
    """The selling entity, as configured (billing_portal settings, TAX_SELLER_*)."""

    country: str
    vat_id: str = ""
    oss_registered: bool = False
    us_states: frozenset[str] = frozenset()


@dataclass(frozen=True)
class BuyerTax:
    """The buyer's tax identity at issue (the account's billing details)."""

    country: str
    us_state: str = ""
    vat_id: str = ""
    vat_id_status: str = VatIdStatus.UNCHECKED


@dataclass(frozen=True)
class TaxRate:
    """One rate an invoice applies, in percent, with the label printed beside its base."""

    rate: Decimal
    label: str


@dataclass(frozen=True)
class TaxDecision:
    """The frozen decision: treatment, rate(s), mentions to print, tax ids to print."""

    treatment: Treatment
    rates: tuple[TaxRate, ...]
    mentions: tuple[str, ...] = ()
    seller_tax_id: str = ""
    buyer_tax_id: str = ""
    # VAT was charged because VIES had not confirmed the buyer's VAT id when we issued: the
    # console lists these invoices for a correcting credit note once the id is confirmed.
    vat_id_unconfirmed: bool = False
    supplied_on: date | None = None

    @property
    def rate(self) -> TaxRate | None:
        """The one rate of a single-rate decision; None when we charge no tax at all."""
        if len(self.rates) > 1:
            raise ValueError("this decision has several rates: name the rate of each line")
        return self.rates[0] if self.rates else None

    def as_data(self) -> dict[str, Any]:
        """JSON-ready, to be stored with an invoice (rates as strings: no float on the way)."""
        return {
            "treatment": str(self.treatment),
            "rates": [{"rate": str(r.rate), "label": r.label} for r in self.rates],
            "mentions": list(self.mentions),
            "seller_tax_id": self.seller_tax_id,
            "buyer_tax_id": self.buyer_tax_id,
            "vat_id_unconfirmed": self.vat_id_unconfirmed,
            "supplied_on": self.supplied_on.isoformat() if self.supplied_on else None,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> TaxDecision:
        """The decision stored by `as_data`, as it was."""
        supplied_on = data.get("supplied_on")
        return cls(
            treatment=Treatment(data["treatment"]),
            rates=tuple(TaxRate(Decimal(r["rate"]), r["label"]) for r in data["rates"]),
            mentions=tuple(data["mentions"]),
            seller_tax_id=data["seller_tax_id"],
            buyer_tax_id=data["buyer_tax_id"],
            vat_id_unconfirmed=data["vat_id_unconfirmed"],
            supplied_on=date.fromisoformat(supplied_on) if supplied_on else None,
        )


def percent(rate: Decimal) -> str:
    """A rate as printed: 20 %, 25.5 %, 6.5 %."""
    return f"{format(rate.normalize(), 'f')} %"


def _vat(country: str, on: date, table: RateTable | None) -> TaxRate:
    rate = rate_for(country, on, table=table)
    return TaxRate(rate, f"VAT {country} {percent(rate)}")


def _unconfirmed(buyer: BuyerTax) -> bool:
    # A VAT id VIES has not confirmed (not yet asked, or no answer and no earlier good one):
    # we charge VAT and say so, rather than exempt on an id nobody checked (django-plans'
    # choice, and what an auditor would ask for).
    return bool(buyer.vat_id) and buyer.vat_id_status in (
        VatIdStatus.PENDING,
        VatIdStatus.UNAVAILABLE,
        VatIdStatus.UNCHECKED,
    )


def _unconfirmed_mention(buyer: BuyerTax) -> str:
    return (
        f"VAT charged: the EU's VIES service had not confirmed VAT id {buyer.vat_id} when this "
        "invoice was issued; a credit note follows once it does."
    )


def tax_decide(
    *,
    seller: SellerTax,
    buyer: BuyerTax,
    channel: str,
    supplied_on: date,
    us_rate_table: RateTable | None = None,
    eu_rate_table: RateTable | None = None,
) -> TaxDecision:
    """Decide the tax treatment of a supply on `supplied_on` (docs/tax.md, the tree).

    The rate tables are the database's (plans.selectors.tax_rate_tables) on the issue path;
    left out, the packaged files are read."""
    seller_country = seller.country.upper()
    # A buyer who gave no country is taxed as a buyer of the seller's own country: charging
    # the home rate is the safe side (Lago and django-plans fall back the same way).
    buyer_country = (buyer.country or seller_country).upper()
    seller_in_eu = seller_country in EU_MEMBER_STATES
    common: dict[str, Any] = {"seller_tax_id": seller.vat_id, "supplied_on": supplied_on}

    if channel == "shopify":
        # Shopify is the merchant of record on its app charges and invoices them with tax.
        return TaxDecision(Treatment.SHOPIFY_CHANNEL, (), (SHOPIFY,), **common)

    if buyer_country == "US":
        state = buyer.us_state.upper()
        # Outside the EU for VAT whatever the seller's country; sales tax only where the
        # seller is registered (economic nexus is the seller's call, see docs/tax.md).
        outside = (OUTSIDE_EU,) if seller_in_eu else ()
        if state and state in seller.us_states:
            entry = (us_rate_table or us_rates()).rate_on(state, supplied_on)
            rate = TaxRate(entry.rate, f"{state} sales tax {percent(entry.rate)}")
            return TaxDecision(Treatment.US_SALES_TAX, (rate,), outside, **common)
        where = state or "the customer's state"
        mention = f"No US sales tax charged: the seller is not registered to collect it in {where}."
        return TaxDecision(
            Treatment.US_NOT_REGISTERED,
            (TaxRate(Decimal(0), "No sales tax"),),
            (*outside, mention),
            **common,
        )

    if buyer_country not in EU_MEMBER_STATES:
        mention = OUTSIDE_EU if seller_in_eu else "No VAT or sales tax charged."
        return TaxDecision(
            Treatment.OUTSIDE_EU,
            (TaxRate(Decimal(0), "VAT not applicable"),),
            (mention,),
            **common,
        )

    unconfirmed = _unconfirmed(buyer)
    notes = (_unconfirmed_mention(buyer),) if unconfirmed else ()
    flags: dict[str, Any] = {"buyer_tax_id": buyer.vat_id, "vat_id_unconfirmed": unconfirmed}

    if seller_in_eu and buyer_country == seller_country:
        # Same country: domestic VAT even for a business with a valid VAT id (no reverse
        # charge inside one member state for these services). Not "unconfirmed": the id
        # would change nothing.
        return TaxDecision(
            Treatment.DOMESTIC,
            (_vat(seller_country, supplied_on, eu_rate_table),),
            buyer_tax_id=buyer.vat_id,
            **common,
        )

    if buyer.vat_id and buyer.vat_id_status == VatIdStatus.VALID:
        return TaxDecision(
            Treatment.REVERSE_CHARGE,
            (TaxRate(Decimal(0), "Reverse charge"),),
            (ARTICLE_196,),
            buyer_tax_id=buyer.vat_id,
            **common,
        )

    if seller_in_eu and not seller.oss_registered:
        # An EU seller not registered for OSS is under the EU-wide EUR 10,000 threshold of
        # Article 59c: its own country's VAT applies to consumers in other member states.
        return TaxDecision(
            Treatment.DOMESTIC,
            (_vat(seller_country, supplied_on, eu_rate_table),),
            notes,
            **flags,
            **common,
        )
    # OSS: the customer's country's rate (a seller outside the EU has no threshold at all: it
    # owes that VAT from the first euro, through the non-Union scheme).
    return TaxDecision(
        Treatment.OSS,
        (_vat(buyer_country, supplied_on, eu_rate_table),),
        (*notes, OSS),
        **flags,
        **common,
    )

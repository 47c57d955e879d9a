"""An independent reference biller: a small, slow, obviously correct model of the rule book's
pricing and period rules, written from shared/spec/billing-rules.md, catalog.md and the
decisions of docs/pricing.md. It imports nothing from the production code: the stateful test
compares the two.

What it models: helpdesk plans (Starter to Advanced) monthly or annual, the four add-ons at any
tier (Automate, Voice, SMS, Convert), per-agent editions (Team, Professional also sold as
Growth, Enterprise Suite; monthly or annual, `keep` at the limit), fees in advance (P1),
helpdesk and add-on overage (P2, P3; Convert never: C2), Voice and SMS of an annual cycle at its
end, each month on its own tier (P4), upgrades now and prorated to the second, month → year
turning the current month into an annual cycle (P6), downgrades, lateral moves and year → month
at the cycle's end, the latest request for an item replacing what was scheduled for it (P7),
late units re-rated on the terms of their own month (F6), resolutions over the allocation
term's running total (Z8, Z9), units held for review (the spike guard: not billed while held;
released, they count again, in their month or as late usage of it; excluded, never; released by
themselves HOLD_DAYS after they were held, by the first billing run from then on). Periods
follow the anchor's day, clamped to shorter months (Jan 31 → Feb 29 → Mar 31).

Money is integer cents; a prorated amount is rounded once, half up (P9), a credit half away
from zero.

Tax (issue 25, docs/tax.md), for the demo's seller (France, registered for OSS and for sales tax
in Washington): prices are tax-exclusive; an invoice's tax is its subtotal times the buyer's
rate, rounded half up once. The buyer's rate: French VAT at home (or without a country), 0 %
reverse charge for another EU country with a VAT id VIES confirmed, that country's VAT
otherwise (OSS), Washington's sales tax in WA, nothing elsewhere in the US or outside the EU.
"""

import calendar
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from fractions import Fraction

# catalog.md, USD cents: monthly fee, tickets included, overage kind, overage price, block size
PLANS = {
    "starter": (1000, 50, "ticket", 40, None),
    "basic": (6000, 300, "block", 4000, 100),
    "pro": (36000, 2000, "block", 3600, 100),
    "advanced": (90000, 5000, "block", 3600, 100),
}
PLAN_ORDER = ["starter", "basic", "pro", "advanced"]
# catalog.md add-ons: meter, price of a unit beyond the tier (None: hard cap), tiers in order
# as (code, monthly fee, included a month).
ADDONS = {
    "automate": (
        "automated_interactions",
        100,
        [("automate-30", 3000, 30), ("automate-100", 9000, 100), ("automate-300", 25000, 300)],
    ),
    "voice": (
        "voice_tickets",
        150,
        [("voice-20", 3000, 20), ("voice-75", 9000, 75), ("voice-250", 25000, 250)],
    ),
    "sms": (
        "sms_tickets",
        100,
        [("sms-20", 2000, 20), ("sms-75", 6000, 75), ("sms-250", 17500, 250)],
    ),
    "convert": (
        "convert_clicks",
        None,
        [("convert-50", 3000, 50), ("convert-200", 10000, 200), ("convert-750", 30000, 750)],
    ),
}
# P4: on an annual subscription these are billed at the end of the cycle.
AT_CYCLE_END = {"voice", "sms"}
# Editions: fee per full agent a month, resolutions per full agent a month (catalog.md, Z8).
EDITIONS = {
    "team": (5500, 5),
    "professional": (11500, 10),
    "growth": (11500, 10),  # Z8: "Professional/Growth", the same edition
    "enterprise_suite": (16900, 15),
}
RESOLUTION_OVERAGE = 200  # pay-as-you-go, cents each (catalog.md)
YEARLY_CAP = 10000  # resolutions per account a year (Z8)
HELPDESK = "helpdesk_tickets"
RESOLUTIONS = "automated_resolutions"
METERS = [HELPDESK, RESOLUTIONS] + [meter for meter, _, _ in ADDONS.values()]
LOOKBACK = 12  # closes whose late usage is still billed (docs/pricing.md, F6)
HOLD_DAYS = timedelta(days=14)  # held units nobody decided on are released after this


def add_months(anchor: datetime, months: int) -> datetime:
    """The anchor's day `months` later, or the last day of a shorter month."""
    year = anchor.year + (anchor.month - 1 + months) // 12
    month = (anchor.month - 1 + months) % 12 + 1
    last = calendar.monthrange(year, month)[1]
    return anchor.replace(year=year, month=month, day=min(anchor.day, last))


def half_up(value: Fraction) -> int:
    return int(value + Fraction(1, 2)) if value >= 0 else -int(-value + Fraction(1, 2))


def tier_of(addon: str, tier: str) -> tuple[int, int, int]:
    """(rank from 1, monthly fee, included a month) of an add-on tier."""
    for rank, (code, fee, included) in enumerate(ADDONS[addon][2], start=1):
        if code == tier:
            return rank, fee, included
    raise KeyError(tier)


@dataclass(frozen=True)
class Terms:
    """What a subscription pays for: a plan or an edition, an interval, add-on tiers."""

    plan: str | None
    interval: str  # "month" | "year"
    addons: tuple[tuple[str, str], ...] = ()  # sorted (add-on, tier)
    edition: tuple[str, int] | None = None  # (code, full agents)

    @property
    def months(self) -> int:
        return 12 if self.interval == "year" else 1

    def tier(self, addon: str) -> str | None:
        return dict(self.addons).get(addon)

    def components(self) -> dict[str, int]:
        """Each component's fee for the interval (P1: a year is 10 months for plans and
        add-ons; an edition is priced per agent per month, so 12)."""
        parts = {}
        if self.plan:
            parts["plan"] = PLANS[self.plan][0] * (10 if self.interval == "year" else 1)
        for addon, tier in self.addons:
            parts[addon] = tier_of(addon, tier)[1] * (10 if self.interval == "year" else 1)
        if self.edition:
            code, agents = self.edition
            parts["edition"] = EDITIONS[code][0] * agents * self.months
        return parts

    def fees(self) -> int:
        return sum(self.components().values())

    def allocation(self) -> int:
        """Z8: per agent per month × agents × months of the term, the yearly cap pro rata."""
        code, agents = self.edition
        return min(EDITIONS[code][1] * agents * self.months, YEARLY_CAP * self.months // 12)


def overage(terms: Terms, meter: str, units: int) -> int:
    """P2, P3: what a month's units on one meter cost beyond its allowance on these terms
    (0 for a meter the terms do not pay for, and for Convert's hard cap)."""
    if meter == HELPDESK:
        if terms.plan is None:
            return 0
        _, included, kind, price, block = PLANS[terms.plan]
        extra = max(0, units - included)
        return extra * price if kind == "ticket" else -(-extra // block) * price
    for addon, (addon_meter, price, _) in ADDONS.items():
        if addon_meter == meter:
            tier = terms.tier(addon)
            if tier is None or price is None:
                return 0
            return max(0, units - tier_of(addon, tier)[2]) * price
    raise KeyError(meter)


def at_cycle_end(terms: Terms, meter: str) -> bool:
    """P4: Voice and SMS of an annual month wait for the cycle's end."""
    return terms.interval == "year" and any(ADDONS[a][0] == meter for a in AT_CYCLE_END)


@dataclass
class Month:
    """A closed month: the terms it was priced on, its cycle, the units billed for it."""

    terms: Terms
    cycle: int  # the index of the month its billing cycle started with
    billed: dict[str, int]


@dataclass(frozen=True)
class Buyer:
    """The buyer's tax identity: country (ISO, "" for none), US state, VAT id confirmed."""

    country: str = ""
    us_state: str = ""
    vat_id_valid: bool = False


# Standard rates in percent of the places the histories use (EU: Directive 2006/112/EC as
# each state sets it; WA: the state rate), unchanged over 2026-2028.
SELLER_COUNTRY = "FR"
EU_VAT = {"FR": 20, "DE": 19, "IE": 23, "FI": Fraction(255, 10)}
US_REGISTERED = {"WA": Fraction(65, 10)}


def tax_rate(buyer: Buyer) -> Fraction:
    country = buyer.country or SELLER_COUNTRY
    if country == "US":
        return Fraction(US_REGISTERED.get(buyer.us_state, 0))
    if country not in EU_VAT:
        return Fraction(0)
    if country != SELLER_COUNTRY and buyer.vat_id_valid:
        return Fraction(0)  # reverse charge
    return Fraction(EU_VAT[country])


def tax_of(buyer: Buyer, subtotal: int) -> int:
    return half_up(Fraction(subtotal) * tax_rate(buyer) / 100)


@dataclass
class Account:
    """A subscription's history as the rule book bills it."""

    anchor: datetime
    terms: Terms
    buyer: Buyer = field(default_factory=Buyer)
    month: int = 0  # the open usage month, counted from the anchor
    cycle: int = 0  # the month the current billing cycle started with
    scheduled: dict = field(default_factory=dict)  # item -> value, for the cycle's end (P7)
    counts: dict[int, dict[str, int]] = field(default_factory=dict)
    closed: dict[int, Month] = field(default_factory=dict)
    cycles_ended: set = field(default_factory=set)  # cycles whose end invoice went out
    resolutions_charged: dict[int, int] = field(default_factory=dict)  # per allocation term
    invoices: list[tuple[str, datetime, int]] = field(default_factory=list)
    # Held for review: key -> (month, meter, units, released by itself from this instant).
    held: dict[int, tuple[int, str, int, datetime]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.invoices.append(("subscription_start", self.anchor, self.terms.fees()))

    def start(self, month: int) -> datetime:
        return add_months(self.anchor, month)

    def taxed_invoices(self) -> list[tuple[str, datetime, int, int, int]]:
        """Each invoice as (reason, start, subtotal, tax, total)."""
        return [
            (
                reason,
                start,
                subtotal,
                tax_of(self.buyer, subtotal),
                subtotal + tax_of(self.buyer, subtotal),
            )
            for reason, start, subtotal in self.invoices
        ]

    def cycle_end(self) -> int:
        return self.cycle + self.terms.months

    def count(self, month: int, meter: str, units: int) -> None:
        counts = self.counts.setdefault(month, {})
        counts[meter] = counts.get(meter, 0) + units

    def used(self, month: int, meter: str) -> int:
        return self.counts.get(month, {}).get(meter, 0)

    # --- held units ------------------------------------------------------------------------

    def hold(self, key: int, month: int, meter: str, units: int, *, at: datetime) -> None:
        """Counted units held for review at `at`: out of their month's count until decided."""
        self.count(month, meter, -units)
        self.held[key] = (month, meter, units, at + HOLD_DAYS)

    def release(self, key: int) -> None:
        """Counted again: billed with their month when it is open, else as late usage (F6)."""
        month, meter, units, _ = self.held.pop(key)
        self.count(month, meter, units)

    def exclude(self, key: int) -> None:
        """Never billed."""
        del self.held[key]

    def run(self, at: datetime) -> None:
        """What a billing run does first: release the holds nobody decided on in time."""
        for key, (*_, due) in sorted(self.held.items()):
            if due <= at:
                self.release(key)

    # --- P6, P7 ---------------------------------------------------------------------------

    def change(self, *, plan=None, interval=None, addons=None, at: datetime) -> tuple[bool, bool]:
        """The upgrade parts now, prorated to the second; the downgrade parts (and lateral
        moves, and year → month) at the end of the cycle. A part replaces whatever was
        scheduled for its item. Returns (anything now, anything scheduled)."""
        up, down = {}, {}
        if plan is not None and plan != self.terms.plan:
            rising = PLAN_ORDER.index(plan) > PLAN_ORDER.index(self.terms.plan)
            (up if rising else down)["plan"] = plan
        if interval is not None and interval != self.terms.interval:
            (up if interval == "year" else down)["interval"] = interval
        for addon, tier in (addons or {}).items():
            old = self.terms.tier(addon)
            if tier == old:
                continue
            rank = tier_of(addon, tier)[0] if tier else 0
            old_rank = tier_of(addon, old)[0] if old else 0
            (up if rank > old_rank else down)[("addon", addon)] = tier
        for item in (*up, *down):
            self.scheduled.pop(item, None)  # the latest request wins
        self.scheduled.update(down)
        if up:
            self._upgrade(up, at)
        return bool(up), bool(down)

    def _upgrade(self, parts: dict, at: datetime) -> None:
        start, end = self.start(self.cycle), self.start(self.cycle_end())
        new = self._applied(self.terms, parts)
        if new.interval != self.terms.interval:
            # Month -> year: the unused part of each monthly fee back, and the annual fees
            # from now to the end of an annual cycle that starts where this month started.
            annual_end = self.start(self.cycle + 12)
            amount = sum(
                -half_up(Fraction(fee * _seconds(at, end), _seconds(start, end)))
                for fee in self.terms.components().values()
            )
            amount += sum(
                half_up(Fraction(fee * _seconds(at, annual_end), _seconds(start, annual_end)))
                for fee in new.components().values()
            )
        else:
            old = self.terms.components()
            amount = sum(
                half_up(
                    Fraction((fee - old.get(name, 0)) * _seconds(at, end), _seconds(start, end))
                )
                for name, fee in new.components().items()
                if fee != old.get(name)
            )
        self.terms = new
        self.invoices.append(("upgrade", at, amount))

    @staticmethod
    def _applied(terms: Terms, parts: dict) -> Terms:
        addons = dict(terms.addons)
        for item, value in parts.items():
            if isinstance(item, tuple):
                if value is None:
                    addons.pop(item[1], None)
                else:
                    addons[item[1]] = value
        return replace(
            terms,
            plan=parts.get("plan", terms.plan),
            interval=parts.get("interval", terms.interval),
            addons=tuple(sorted(addons.items())),
        )

    # --- P1, P2, P3, P4, F6, Z9: a close ----------------------------------------------------

    def close(self) -> int:
        """Close the open month: its usage on the terms in force at the close, late units of
        earlier months re-rated on their own terms (F6), at an annual cycle's end its Voice and
        SMS month by month (P4), at any cycle's end the next cycle's fees after the scheduled
        changes (P1, P7). Returns the invoice total."""
        month, terms = self.month, self.terms
        total = sum(
            overage(terms, meter, self.used(month, meter))
            for meter in METERS
            if meter != RESOLUTIONS and not at_cycle_end(terms, meter)
        )
        for earlier in sorted(self.closed, reverse=True)[:LOOKBACK]:
            kept = self.closed[earlier]
            for meter in METERS:
                waiting = at_cycle_end(kept.terms, meter) and kept.cycle not in self.cycles_ended
                if meter == RESOLUTIONS or waiting:
                    continue  # resolutions per term below; P4 months join the cycle's end
                now = self.used(earlier, meter)
                total += overage(kept.terms, meter, now) - overage(
                    kept.terms, meter, kept.billed.get(meter, 0)
                )
                kept.billed[meter] = now
        self.closed[month] = Month(terms, self.cycle, dict(self.counts.get(month, {})))
        total += self._resolutions()
        if month + 1 == self.cycle_end():
            if terms.interval == "year":
                for m in range(self.cycle, month + 1):
                    kept = self.closed[m]
                    for meter in METERS:
                        if at_cycle_end(kept.terms, meter):
                            kept.billed[meter] = self.used(m, meter)
                            total += overage(kept.terms, meter, kept.billed[meter])
            self.cycles_ended.add(self.cycle)
            self.terms = self._applied(self.terms, self.scheduled)
            self.scheduled = {}
            self.cycle = month + 1
            total += self.terms.fees()
        self.invoices.append(("period_close", self.start(month), total))
        self.month += 1
        return total

    def _resolutions(self) -> int:
        """Z9 `keep`: each allocation term (a billing cycle) is billed on its running total
        of closed months as counted now; late resolutions settle the difference (F6)."""
        total = 0
        for cycle in sorted({m.cycle for m in self.closed.values() if m.terms.edition}):
            months = [m for m, kept in self.closed.items() if kept.cycle == cycle]
            terms = self.closed[max(months)].terms
            used = 0
            for m in months:
                used += self.used(m, RESOLUTIONS)
                self.closed[m].billed[RESOLUTIONS] = self.used(m, RESOLUTIONS)
            due = max(0, used - terms.allocation()) * RESOLUTION_OVERAGE
            total += due - self.resolutions_charged.get(cycle, 0)
            self.resolutions_charged[cycle] = due
        return total


def _seconds(start: datetime, end: datetime) -> int:
    return int((end - start).total_seconds())

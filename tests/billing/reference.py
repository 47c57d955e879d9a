"""An independent reference biller: a small, slow, obviously correct model of the rule book's
pricing and period rules for monthly helpdesk plans with the Voice add-on, written from
shared/spec/billing-rules.md, catalog.md and the decisions of docs/pricing.md. It imports
nothing from the production code: the stateful test compares the two.

Money is integer cents; a prorated amount is rounded once, half up (P9).
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction

# catalog.md, USD cents: monthly fee, tickets included, overage kind, overage price, block size
PLANS = {
    "starter": (1000, 50, "ticket", 40, None),
    "basic": (6000, 300, "block", 4000, 100),
    "pro": (36000, 2000, "block", 3600, 100),
}
PLAN_ORDER = ["starter", "basic", "pro"]
# Voice tiers: monthly fee, voice tickets included; 150 cents each beyond (catalog.md)
VOICE = {"voice-20": (3000, 20), "voice-75": (9000, 75), "voice-250": (25000, 250)}
VOICE_ORDER = [None, "voice-20", "voice-75", "voice-250"]
VOICE_EXTRA = 150
LOOKBACK = 12  # closes whose late usage is still billed (docs/pricing.md, F6)


def month_start(first: datetime, index: int) -> datetime:
    """The first day of the month `index` months after `first` (which is a 1st, 00:00 UTC)."""
    year, month = divmod(first.month - 1 + index, 12)
    return datetime(first.year + year, month + 1, 1, tzinfo=UTC)


def half_up(value: Fraction) -> int:
    return int(value + Fraction(1, 2)) if value >= 0 else -int(-value + Fraction(1, 2))


def helpdesk_overage(plan: str, tickets: int) -> int:
    """P2: each extra ticket, or whole blocks of extra tickets."""
    _, included, kind, price, block = PLANS[plan]
    extra = max(0, tickets - included)
    if kind == "ticket":
        return extra * price
    blocks = (extra + block - 1) // block
    return blocks * price


def voice_overage(tier: str | None, calls: int) -> int:
    """P3: beyond the tier, 150 cents a voice ticket; nothing without the add-on."""
    if tier is None:
        return 0
    return max(0, calls - VOICE[tier][1]) * VOICE_EXTRA


def fees(plan: str, tier: str | None) -> int:
    """P1: the month's fees, in advance."""
    return PLANS[plan][0] + (VOICE[tier][0] if tier else 0)


@dataclass
class Month:
    """A closed month: the terms it was priced on and the units billed for it."""

    plan: str
    tier: str | None
    billed: dict[str, int]


@dataclass
class Account:
    """A monthly subscription's history as the rule book bills it."""

    first: datetime
    plan: str
    tier: str | None
    month: int = 0  # the open month, counted from `first`
    scheduled_plan: str | None = None
    scheduled_tier: tuple[str | None] | None = None  # (tier,): a scheduled tier change
    counts: dict[int, dict[str, int]] = field(default_factory=dict)
    closed: dict[int, Month] = field(default_factory=dict)
    invoices: list[tuple[str, datetime, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.invoices.append(("subscription_start", self.first, fees(self.plan, self.tier)))

    def count(self, month: int, meter: str, units: int) -> None:
        self.counts.setdefault(month, {"tickets": 0, "calls": 0})[meter] += units

    def change(self, *, plan: str, tier: str | None, at: datetime) -> tuple[bool, bool]:
        """P6/P7: the upgrade parts now, prorated to the second; the downgrade parts (and
        lateral moves) at the end of the month. Returns (anything now, anything scheduled)."""
        start, end = month_start(self.first, self.month), month_start(self.first, self.month + 1)
        remaining = int((end - at).total_seconds())
        total = int((end - start).total_seconds())
        now, later = 0, False
        amount = 0
        if plan != self.plan:
            if PLAN_ORDER.index(plan) > PLAN_ORDER.index(self.plan):
                amount += half_up(
                    Fraction((PLANS[plan][0] - PLANS[self.plan][0]) * remaining, total)
                )
                self.plan = plan
                now += 1
            else:
                self.scheduled_plan, later = plan, True
        if tier != self.tier:
            if VOICE_ORDER.index(tier) > VOICE_ORDER.index(self.tier):
                old = VOICE[self.tier][0] if self.tier else 0
                amount += half_up(Fraction((VOICE[tier][0] - old) * remaining, total))
                self.tier = tier
                now += 1
            else:
                self.scheduled_tier, later = (tier,), True
        if now:
            self.invoices.append(("upgrade", at, amount))
        return bool(now), later

    def close(self) -> int:
        """Close the open month: its usage on the terms in force at the close, late units of
        earlier months re-rated on their own terms (F6), next month's fees after the
        scheduled changes (P1, P7). Returns the invoice total."""
        month = self.month
        used = self.counts.get(month, {"tickets": 0, "calls": 0})
        total = helpdesk_overage(self.plan, used["tickets"]) + voice_overage(
            self.tier, used["calls"]
        )
        for earlier in sorted(self.closed, reverse=True)[:LOOKBACK]:
            kept = self.closed[earlier]
            now = self.counts.get(earlier, {"tickets": 0, "calls": 0})
            total += helpdesk_overage(kept.plan, now["tickets"]) - helpdesk_overage(
                kept.plan, kept.billed["tickets"]
            )
            total += voice_overage(kept.tier, now["calls"]) - voice_overage(
                kept.tier, kept.billed["calls"]
            )
            kept.billed = dict(now)
        self.closed[month] = Month(self.plan, self.tier, dict(used))
        if self.scheduled_plan is not None:
            self.plan, self.scheduled_plan = self.scheduled_plan, None
        if self.scheduled_tier is not None:
            (self.tier,), self.scheduled_tier = self.scheduled_tier, None
        total += fees(self.plan, self.tier)
        self.invoices.append(("period_close", month_start(self.first, month), total))
        self.month += 1
        return total

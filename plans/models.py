"""The catalog (plans, add-ons, editions, their allowances and prices) and subscriptions to it.

The catalog is data, loaded by `manage.py load_catalog` and edited in the admin. Prices and
allowances belong to exactly one offer (a plan, an add-on tier or an edition); an optional
account makes them that account's own negotiated terms (Enterprise).
"""

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from accounts.models import CURRENCIES, CURRENCY_CHOICES, Account

from . import meters, periods


class Meter(models.TextChoices):
    """The six meters of the rule book, §1, as model choices: codes and labels are plans.meters'."""

    HELPDESK_TICKETS = meters.HELPDESK_TICKETS, meters.LABELS[meters.HELPDESK_TICKETS]
    AUTOMATED_INTERACTIONS = (
        meters.AUTOMATED_INTERACTIONS,
        meters.LABELS[meters.AUTOMATED_INTERACTIONS],
    )
    VOICE_TICKETS = meters.VOICE_TICKETS, meters.LABELS[meters.VOICE_TICKETS]
    SMS_TICKETS = meters.SMS_TICKETS, meters.LABELS[meters.SMS_TICKETS]
    CONVERT_CLICKS = meters.CONVERT_CLICKS, meters.LABELS[meters.CONVERT_CLICKS]
    AUTOMATED_RESOLUTIONS = (
        meters.AUTOMATED_RESOLUTIONS,
        meters.LABELS[meters.AUTOMATED_RESOLUTIONS],
    )


class Interval(models.TextChoices):
    MONTH = periods.MONTH, "monthly"
    YEAR = periods.YEAR, "yearly"
    # Shopify-channel subscriptions only (Shopify's EVERY_30_DAYS); they pay monthly prices.
    DAYS_30 = periods.DAYS_30, "every 30 days"


class PriceInterval(models.TextChoices):
    """The catalog's price intervals: a 30-day cycle reads the monthly prices
    (periods.price_interval), so no price is ever stored for it."""

    MONTH = periods.MONTH, "monthly"
    YEAR = periods.YEAR, "yearly"


class Plan(models.Model):
    """A helpdesk plan (ticket-based). Order for upgrades and downgrades is `rank`."""

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=100)
    rank = models.PositiveSmallIntegerField(unique=True)
    included_integrations = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty means unlimited (P5)."
    )
    is_custom = models.BooleanField(
        default=False, help_text="Negotiated per account: prices and allowances carry an account."
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["rank"]

    def __str__(self) -> str:
        return self.name


class AddOn(models.Model):
    """Automate, Voice, SMS, Convert: each bills its own meter through tiers."""

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=100)
    meter = models.CharField(max_length=32, choices=Meter.choices, unique=True)
    is_active = models.BooleanField(default=True)

    class Meta:
        verbose_name = "add-on"
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name


class AddOnTier(models.Model):
    addon = models.ForeignKey(AddOn, on_delete=models.CASCADE, related_name="tiers")
    code = models.SlugField(max_length=40)
    name = models.CharField(max_length=100)
    rank = models.PositiveSmallIntegerField()

    class Meta:
        verbose_name = "add-on tier"
        ordering = ["addon__code", "rank"]
        constraints = [
            models.UniqueConstraint(fields=["addon", "code"], name="addontier_code_unique"),
            models.UniqueConstraint(fields=["addon", "rank"], name="addontier_rank_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.addon.name} — {self.name}"


class Edition(models.Model):
    """A per-agent edition with an automated-resolution allocation (Z8, Z9)."""

    code = models.SlugField(max_length=40, unique=True)
    alias = models.SlugField(
        max_length=40,
        blank=True,
        help_text="Another code the edition is sold as (Z8: Professional is also Growth).",
    )
    name = models.CharField(max_length=100)
    rank = models.PositiveSmallIntegerField(unique=True)
    resolutions_per_agent_month = models.PositiveIntegerField()
    yearly_resolution_cap = models.PositiveIntegerField(default=10_000)
    min_commitment_units = models.PositiveIntegerField(default=100)

    class Meta:
        ordering = ["rank"]
        constraints = [
            models.UniqueConstraint(
                fields=["alias"], condition=~Q(alias=""), name="edition_alias_unique"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class OverageMode(models.TextChoices):
    PER_UNIT = "per_unit", "per unit"
    PER_BLOCK = "per_block", "per block"
    HARD_CAP = "hard_cap", "hard cap (no overage)"


def _one_owner() -> Q:
    """Exactly one of plan, add-on tier or edition owns a price or an allowance."""
    plan, tier, edition = (
        Q(plan__isnull=False),
        Q(addon_tier__isnull=False),
        Q(edition__isnull=False),
    )
    return (plan & ~tier & ~edition) | (~plan & tier & ~edition) | (~plan & ~tier & edition)


def _unique_per_owner(table: str, fields: list[str]) -> list[models.UniqueConstraint]:
    """Catalog rows are unique per owner; account-specific rows are unique per account too.

    NULLs are distinct in unique indexes, so the catalog row (no account) and each account's
    own row need separate partial constraints.
    """
    constraints = []
    for owner in ("plan", "addon_tier", "edition"):
        constraints.append(
            models.UniqueConstraint(
                fields=[owner, *fields],
                condition=Q(account__isnull=True),
                name=f"{table}_{owner}_catalog_unique",
            )
        )
        constraints.append(
            models.UniqueConstraint(
                fields=[owner, "account", *fields],
                condition=Q(account__isnull=False),
                name=f"{table}_{owner}_account_unique",
            )
        )
    return constraints


class _Owned(models.Model):
    plan = models.ForeignKey(Plan, null=True, blank=True, on_delete=models.CASCADE)
    addon_tier = models.ForeignKey(AddOnTier, null=True, blank=True, on_delete=models.CASCADE)
    edition = models.ForeignKey(Edition, null=True, blank=True, on_delete=models.CASCADE)
    account = models.ForeignKey(
        Account,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        help_text="Set for one account's negotiated terms; empty for the public catalog.",
    )

    class Meta:
        abstract = True

    @property
    def owner(self) -> "Plan | AddOnTier | Edition | None":
        return self.plan or self.addon_tier or self.edition

    def clean(self) -> None:
        owners = [o for o in (self.plan_id, self.addon_tier_id, self.edition_id) if o]
        if len(owners) != 1:
            raise ValidationError("Choose exactly one of plan, add-on tier or edition.")


class Allowance(_Owned):
    """What an offer includes on a meter each month, and what happens beyond it."""

    meter = models.CharField(max_length=32, choices=Meter.choices)
    included = models.PositiveIntegerField(help_text="Units included per month.")
    overage_mode = models.CharField(max_length=10, choices=OverageMode.choices)
    block_size = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=_one_owner(), name="allowance_one_owner"),
            models.CheckConstraint(
                condition=Q(overage_mode__in=OverageMode.values),
                name="allowance_mode_valid",
            ),
            models.CheckConstraint(
                condition=~Q(overage_mode=OverageMode.PER_BLOCK) | Q(block_size__gt=0),
                name="allowance_block_size_for_blocks",
            ),
            *_unique_per_owner("allowance", ["meter"]),
        ]

    def clean(self) -> None:
        super().clean()
        if self.overage_mode == OverageMode.PER_BLOCK and not self.block_size:
            raise ValidationError({"block_size": "A per-block overage needs a block size."})

    def __str__(self) -> str:
        return f"{self.owner}: {self.included} {self.meter}/month, {self.overage_mode}"


class PriceComponent(models.TextChoices):
    FEE = "fee"
    OVERAGE = "overage"
    COMMITMENT = "commitment"


class Price(_Owned):
    """One amount of an offer in one currency.

    `fee` is the recurring fee for the interval (per full agent for editions); `overage` is the
    price of one unit or one block beyond the allowance; `commitment` is the price of one
    pre-purchased automated resolution (Z9). Amounts are minor units, fractional when a unit
    costs less than a cent's precision allows (P9 rounds once per invoice line).
    """

    Component = PriceComponent

    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    interval = models.CharField(
        max_length=5, choices=PriceInterval.choices, default=PriceInterval.MONTH
    )
    component = models.CharField(max_length=10, choices=Component.choices, default=Component.FEE)
    unit_amount_minor = models.DecimalField(max_digits=14, decimal_places=4)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=_one_owner(), name="price_one_owner"),
            models.CheckConstraint(
                condition=Q(unit_amount_minor__gte=0), name="price_not_negative"
            ),
            models.CheckConstraint(condition=Q(currency__in=CURRENCIES), name="price_currency"),
            models.CheckConstraint(
                condition=Q(interval__in=PriceInterval.values), name="price_interval"
            ),
            models.CheckConstraint(
                condition=Q(component__in=PriceComponent.values), name="price_component"
            ),
            *_unique_per_owner("price", ["currency", "interval", "component"]),
        ]

    def clean(self) -> None:
        super().clean()
        if self.unit_amount_minor is not None and self.unit_amount_minor < 0:
            raise ValidationError({"unit_amount_minor": "A price cannot be negative."})

    def __str__(self) -> str:
        amount = f"{self.unit_amount_minor} {self.currency}"
        return f"{self.owner} {self.component} {amount}/{self.interval}"


class SubscriptionStatus(models.TextChoices):
    ACTIVE = "active"
    PAST_DUE = "past_due", "past due"
    SUSPENDED = "suspended"
    CANCELED = "canceled"


class AtLimit(models.TextChoices):
    KEEP = "keep", "keep running (overage)"
    PAUSE = "pause", "pause AI features"


class Subscription(models.Model):
    """An account's subscription to a helpdesk plan or a per-agent edition.

    The current period is stored, not recomputed: `run_billing` advances it from the anchor
    (see plans.periods) when the period closes. One subscription per account is live at a time.
    """

    Status = SubscriptionStatus

    AtLimit = AtLimit

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="subscriptions")
    plan = models.ForeignKey(Plan, null=True, blank=True, on_delete=models.PROTECT)
    edition = models.ForeignKey(Edition, null=True, blank=True, on_delete=models.PROTECT)
    interval = models.CharField(max_length=5, choices=Interval.choices, default=Interval.MONTH)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    billing_anchor = models.DateTimeField(help_text="Every period is counted from this instant.")
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField()
    # The monthly usage period run_billing closes next (== the current period when monthly).
    usage_period_start = models.DateTimeField(blank=True)
    usage_period_end = models.DateTimeField(blank=True)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    is_migrated = models.BooleanField(
        default=False,
        help_text="Migrated mid-cycle: the current period's fees were paid elsewhere (P1).",
    )
    spending_cap_minor = models.BigIntegerField(
        null=True, blank=True, help_text="Approved spending cap per period (P8), minor units."
    )
    full_agents = models.PositiveIntegerField(default=0)
    light_agents = models.PositiveIntegerField(default=0)
    commitment_units = models.PositiveIntegerField(
        default=0, help_text="Pre-purchased automated resolutions for the allocation year (Z9)."
    )
    ai_at_limit = models.CharField(max_length=5, choices=AtLimit.choices, default=AtLimit.KEEP)
    ai_monthly_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="The account's own monthly cap on automated resolutions."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(plan__isnull=False) & Q(edition__isnull=True))
                | (Q(plan__isnull=True) & Q(edition__isnull=False)),
                name="subscription_plan_or_edition",
            ),
            models.CheckConstraint(
                condition=Q(current_period_end__gt=models.F("current_period_start")),
                name="subscription_period_ordered",
            ),
            models.CheckConstraint(
                condition=Q(usage_period_end__gt=models.F("usage_period_start")),
                name="subscription_usage_period_ordered",
            ),
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True) | Q(ended_at__gte=models.F("started_at")),
                name="subscription_end_after_start",
            ),
            models.CheckConstraint(
                condition=Q(spending_cap_minor__isnull=True) | Q(spending_cap_minor__gte=0),
                name="subscription_cap_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(interval__in=Interval.values), name="subscription_interval"
            ),
            models.CheckConstraint(
                condition=Q(status__in=SubscriptionStatus.values), name="subscription_status"
            ),
            # At most one live subscription per account: two would bill the same usage twice.
            models.UniqueConstraint(
                fields=["account"],
                condition=Q(ended_at__isnull=True),
                name="subscription_one_live_per_account",
                violation_error_message="This account already has a live subscription.",
            ),
        ]
        indexes = [
            # The close's question, every run: which live subscriptions' usage period has
            # ended (billing.closing). Partial: ended subscriptions pile up and are never due.
            models.Index(
                fields=["usage_period_end"],
                condition=Q(ended_at__isnull=True),
                name="subscription_close_due_idx",
            )
        ]

    @property
    def offer(self) -> "Plan | Edition":
        offer = self.plan or self.edition
        assert offer is not None  # subscription_plan_or_edition: exactly one is set
        return offer

    def clean(self) -> None:
        if self.usage_period_start is None and self.billing_anchor and self.current_period_start:
            # Entered by hand in the admin: the usage period follows from the anchor.
            self.usage_period_start, self.usage_period_end = periods.usage_period_containing(
                self.billing_anchor, self.current_period_start, self.interval
            )
        if bool(self.plan_id) == bool(self.edition_id):
            raise ValidationError("A subscription is to exactly one plan or one edition.")
        start, end = self.current_period_start, self.current_period_end
        if start and end and end <= start:
            raise ValidationError({"current_period_end": "The period must end after it starts."})
        if self.account_id and self.started_at:
            self._refuse_overlap()

    def _refuse_overlap(self) -> None:
        others = Subscription.objects.filter(account_id=self.account_id).exclude(pk=self.pk)
        end = self.ended_at
        overlapping = others.filter(Q(ended_at__isnull=True) | Q(ended_at__gt=self.started_at))
        if end is not None:
            overlapping = overlapping.filter(started_at__lt=end)
        if overlapping.exists():
            raise ValidationError(
                "This account already has a subscription over that time; end it first."
            )

    def __str__(self) -> str:
        return f"{self.account.slug}: {self.offer} ({self.interval})"


class SubscriptionAddOn(models.Model):
    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="addons")
    addon = models.ForeignKey(AddOn, on_delete=models.PROTECT)
    tier = models.ForeignKey(AddOnTier, on_delete=models.PROTECT)
    started_at = models.DateTimeField()

    class Meta:
        verbose_name = "subscription add-on"
        constraints = [
            models.UniqueConstraint(fields=["subscription", "addon"], name="subaddon_once"),
        ]

    def clean(self) -> None:
        if self.tier_id and self.addon_id and self.tier.addon_id != self.addon_id:
            raise ValidationError({"tier": "This tier belongs to another add-on."})

    def __str__(self) -> str:
        return f"{self.tier}"


class ChangeStatus(models.TextChoices):
    SCHEDULED = "scheduled"
    APPLIED = "applied"
    CANCELED = "canceled"


class CancelReason(models.TextChoices):
    """Why a merchant cancels, as the confirmation step offers it (optional): counted on the
    console's figures, shown on the account's page."""

    TOO_EXPENSIVE = "too_expensive", "It costs too much"
    MISSING_FEATURE = "missing_feature", "A feature we need is missing"
    SWITCHING = "switching", "We are moving to another helpdesk"
    NOT_USING = "not_using", "We do not use it enough"
    CLOSING = "closing", "We are closing or pausing the business"
    OTHER = "other", "Another reason"


class ScheduledChange(models.Model):
    """A downgrade waiting for the end of the cycle (P7), or the subscription's end
    (`cancel`), cancellable until then."""

    Status = ChangeStatus
    Reason = CancelReason

    subscription = models.ForeignKey(
        Subscription, on_delete=models.CASCADE, related_name="scheduled_changes"
    )
    plan = models.ForeignKey(Plan, null=True, blank=True, on_delete=models.PROTECT)
    interval = models.CharField(max_length=5, choices=Interval.choices, blank=True)
    addon = models.ForeignKey(AddOn, null=True, blank=True, on_delete=models.PROTECT)
    addon_tier = models.ForeignKey(
        AddOnTier,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        help_text="Empty with an add-on set means the add-on is removed.",
    )
    cancel = models.BooleanField(
        default=False,
        help_text="The subscription ends at effective_at: its last period is invoiced as usual, "
        "no fee follows.",
    )
    # Why the merchant cancels (a cancellation's own row, so that an undone one keeps it and
    # the console counts them by one indexed column, not by reading audit payloads).
    cancel_reason = models.CharField(
        max_length=20, choices=CancelReason.choices, blank=True, help_text="Optional."
    )
    cancel_comment = models.CharField(
        max_length=1000, blank=True, help_text="The merchant's own words, optional."
    )
    effective_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SCHEDULED)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["effective_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(cancel_reason__in=["", *CancelReason.values]),
                name="scheduledchange_cancel_reason_known",
            ),
            # A reason belongs to a cancellation, never to a downgrade.
            models.CheckConstraint(
                condition=Q(cancel=True) | (Q(cancel_reason="") & Q(cancel_comment="")),
                name="scheduledchange_reason_of_a_cancel",
            ),
            models.CheckConstraint(
                condition=Q(plan__isnull=False)
                | ~Q(interval="")
                | Q(addon__isnull=False)
                | Q(cancel=True),
                name="scheduledchange_changes_something",
            ),
            # One scheduled end per subscription: a second click finds the first.
            models.UniqueConstraint(
                fields=["subscription"],
                condition=Q(cancel=True, status="scheduled"),
                name="scheduledchange_one_cancel",
            ),
            models.CheckConstraint(
                condition=Q(status__in=ChangeStatus.values), name="scheduledchange_status"
            ),
        ]

    def __str__(self) -> str:
        parts = []
        if self.plan_id:
            parts.append(f"plan → {self.plan}")
        if self.interval:
            parts.append(f"interval → {self.interval}")
        if self.addon_id:
            parts.append(f"{self.addon} → {self.addon_tier or 'removed'}")
        if self.cancel:
            parts.append("subscription ends (canceled at the end of the cycle)")
        return ", ".join(parts) or "change"

    def as_audit(self) -> dict:
        """What the change sets, as the audit log keeps it."""
        return {
            "plan": self.plan.code if self.plan else None,
            "interval": self.interval or None,
            "addon": self.addon.code if self.addon else None,
            "tier": self.addon_tier.code if self.addon_tier else None,
            "effective_at": self.effective_at.isoformat(),
        }


class SubscriptionStatusChange(models.Model):
    """The audit trail of a subscription's states (suspension and reactivation, F4)."""

    subscription = models.ForeignKey(
        Subscription, on_delete=models.CASCADE, related_name="status_changes"
    )
    from_status = models.CharField(max_length=10)
    to_status = models.CharField(max_length=10)
    reason = models.CharField(max_length=200, blank=True)
    at = models.DateTimeField()

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.subscription}: {self.from_status} → {self.to_status}"


class TaxRateKind(models.TextChoices):
    EU_VAT = "eu_vat", "EU standard VAT rate"
    US_STATE = "us_state", "US state sales tax rate"


class TaxRateEntry(models.Model):
    """One dated tax rate (docs/tax.md, "The rates and their sources"): in force for `code`
    from `effective_from` until the next entry's date. Versioned: a new rate, or a correction
    of a rate already invoiced, is a new dated row; changing a row takes
    `manage.py tax_rates_load --correct REASON` and leaves an audit row. Seeded from the
    packaged plans/tax/*.json by migration 0007."""

    Kind = TaxRateKind

    kind = models.CharField(max_length=8, choices=TaxRateKind.choices)
    code = models.CharField(max_length=2, help_text="ISO country (EU) or state code (US).")
    rate = models.DecimalField(max_digits=6, decimal_places=3, help_text="Percent.")
    effective_from = models.DateField()
    source = models.TextField(help_text="Where the rate comes from (a law, a URL).")
    note = models.TextField(blank=True)
    loaded_at = models.DateTimeField(help_text="When this row was loaded or last corrected.")

    class Meta:
        ordering = ["kind", "code", "effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "code", "effective_from"], name="taxrate_one_per_date"
            ),
            models.CheckConstraint(
                condition=Q(rate__gte=0) & Q(rate__lt=100), name="taxrate_percentage"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=TaxRateKind.values), name="taxrate_kind_known"
            ),
            models.CheckConstraint(condition=Q(code__regex=r"^[A-Z]{2}$"), name="taxrate_code"),
            models.CheckConstraint(condition=~Q(source=""), name="taxrate_has_source"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.code} from {self.effective_from}: {self.rate} %"


class ExchangeRate(models.Model):
    """One ECB euro reference rate (docs/tax.md, "VAT in euros"): `units_per_eur` of `currency`
    for one euro, as published on `published_on`. Loaded by the daily task and by
    `manage.py ecb_rates_load`, each new row audited; a published rate is never changed.
    Seeded from the packaged plans/tax/ecb_rates.xml by migration 0008."""

    published_on = models.DateField()
    currency = models.CharField(max_length=3)
    units_per_eur = models.DecimalField(max_digits=16, decimal_places=6)
    source = models.TextField(help_text="Where the rate was read (the URL or file).")
    loaded_at = models.DateTimeField()

    class Meta:
        ordering = ["currency", "published_on"]
        constraints = [
            models.UniqueConstraint(
                fields=["currency", "published_on"], name="exchangerate_one_per_day"
            ),
            models.CheckConstraint(condition=Q(units_per_eur__gt=0), name="exchangerate_positive"),
            models.CheckConstraint(
                condition=Q(currency__regex=r"^[A-Z]{3}$"), name="exchangerate_currency"
            ),
            models.CheckConstraint(condition=~Q(source=""), name="exchangerate_has_source"),
        ]

    def __str__(self) -> str:
        return f"1 EUR = {self.units_per_eur} {self.currency} on {self.published_on}"

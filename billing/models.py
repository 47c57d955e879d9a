"""Invoices and what closing a period records.

An invoice is built as a draft, then finalized: it gets the next number of its year (no gaps:
the counter row is locked in the finalizing transaction) and never changes again (F5); its
status moves only through `billing.invoicing.invoice_transition`, which audits each move.
"""

from django.db import models
from django.db.models import Q

from accounts.models import CURRENCY_CHOICES, Account
from plans.models import Subscription


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    REQUIRES_CONFIRMATION = "requires_confirmation", "requires confirmation"
    PAST_DUE = "past_due", "past due"
    VOID = "void"
    UNCOLLECTIBLE = "uncollectible"
    # Paid, then the card's bank took the money back (a card dispute Stripe lost): owed again,
    # but never charged again by the schedules; an operator decides (billing.disputes).
    DISPUTED_LOST = "disputed_lost", "owed again (dispute lost)"


# An invoice in these states is still owed: collection may charge it, the statement counts it in
# the account's amount owed, the page lists it as unpaid.
UNPAID = (InvoiceStatus.OPEN, InvoiceStatus.PAST_DUE, InvoiceStatus.REQUIRES_CONFIRMATION)
# The unpaid invoices whose charge was tried and did not go through (it failed, or waits for
# the customer's confirmation): what dunning suspends for and the console's queue watches. An
# open invoice is not overdue yet, it simply has not been charged.
OVERDUE = (InvoiceStatus.PAST_DUE, InvoiceStatus.REQUIRES_CONFIRMATION)


class InvoiceKind(models.TextChoices):
    INVOICE = "invoice"
    CREDIT_NOTE = "credit_note", "credit note"


class InvoiceReason(models.TextChoices):
    SUBSCRIPTION_START = "subscription_start", "subscription start"  # the first fees (P1)
    PERIOD_CLOSE = "period_close", "period close"  # usage of the closed period + next fees (P1)
    UPGRADE = "upgrade"  # prorated difference, charged at once (P6)
    CORRECTION = "correction"  # a credit note


class Invoice(models.Model):
    Status = InvoiceStatus
    Kind = InvoiceKind
    Reason = InvoiceReason

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="invoices")
    subscription = models.ForeignKey(
        Subscription, on_delete=models.PROTECT, null=True, blank=True, related_name="invoices"
    )
    kind = models.CharField(max_length=12, choices=InvoiceKind.choices, default=InvoiceKind.INVOICE)
    reason = models.CharField(max_length=20, choices=InvoiceReason.choices)
    status = models.CharField(
        max_length=22, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT
    )
    number = models.CharField(max_length=20, unique=True, null=True, blank=True)
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    period_start = models.DateTimeField(
        help_text="The period the invoice is for (closed usage, or fees)."
    )
    period_end = models.DateTimeField()
    # Tax (docs/tax.md): decided once, at issue, and frozen with the invoice. The lines are
    # tax-exclusive; `subtotal_minor` is the sum of the taxable lines, `tax_minor` the tax on
    # it (once per rate, `tax_rates`), and `total_minor` what is owed: subtotal + tax, less
    # the account credit applied after tax (lines with `is_settlement`).
    subtotal_minor = models.BigIntegerField(default=0)
    tax_minor = models.BigIntegerField(default=0)
    total_minor = models.BigIntegerField(default=0)
    tax_treatment = models.CharField(
        max_length=20, blank=True, help_text="Blank: issued before tax was computed."
    )
    tax_decision = models.JSONField(
        default=dict, blank=True, help_text="plans.tax.TaxDecision.as_data(), frozen at issue."
    )
    tax_rates = models.JSONField(
        default=list,
        blank=True,
        help_text="One row per rate: rate, label, taxable_minor, tax_minor.",
    )
    vat_id_unconfirmed = models.BooleanField(
        default=False, help_text="VAT charged because VIES had not confirmed the buyer's VAT id."
    )
    parties = models.JSONField(
        default=dict,
        blank=True,
        help_text="Seller and buyer as printed: legal names, addresses, tax ids, at issue.",
    )
    credited_invoice = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="credit_notes"
    )
    note = models.CharField(max_length=300, blank=True)
    # A credit note's words for the customer, printed as its line and on its PDF. The operator's
    # reason for it is another thing: it stays in the audit log and the console.
    description = models.CharField(
        max_length=300,
        blank=True,
        help_text="A credit note: what it is for, in the customer's words.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    issued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # One invoice per subscription and closed period, whatever runs run_billing (P1).
            models.UniqueConstraint(
                fields=["subscription", "period_start"],
                condition=Q(reason="period_close"),
                name="invoice_one_per_period_close",
            ),
            models.UniqueConstraint(
                fields=["subscription"],
                condition=Q(reason="subscription_start"),
                name="invoice_one_start_per_subscription",
            ),
            models.CheckConstraint(
                condition=Q(status="draft") | Q(number__isnull=False, issued_at__isnull=False),
                name="invoice_final_has_number",
            ),
            models.CheckConstraint(
                condition=Q(kind="invoice", total_minor__gte=0)
                | Q(kind="credit_note", total_minor__lte=0),
                name="invoice_total_sign",
            ),
            models.CheckConstraint(
                condition=Q(status__in=InvoiceStatus.values), name="invoice_status"
            ),
            models.CheckConstraint(
                condition=~Q(kind="credit_note") | ~Q(description=""),
                name="invoice_credit_note_described",
            ),
        ]
        indexes = [
            models.Index(fields=["account", "-created_at"], name="invoice_account_idx"),
            # The console's list of invoices that charged VAT on a VAT id VIES had not
            # confirmed yet: a handful of rows among millions.
            models.Index(
                fields=["account"],
                condition=Q(vat_id_unconfirmed=True),
                name="invoice_vat_unconfirmed_idx",
            ),
        ]

    @property
    def is_final(self) -> bool:
        return self.status != InvoiceStatus.DRAFT

    def __str__(self) -> str:
        return self.number or f"draft #{self.pk}"


class InvoiceLine(models.Model):
    """One priced line, exactly as plans.pricing produced it, with the rules behind it."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=20)
    description = models.CharField(max_length=300)
    meter = models.CharField(max_length=32, blank=True)
    quantity = models.IntegerField()
    unit_price_minor = models.DecimalField(max_digits=16, decimal_places=6)
    amount_minor = models.BigIntegerField()
    rules = models.JSONField(default=list)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    # Account credit applied, or a negative total carried to the account's credit: these
    # settle the invoice after tax and are outside its taxable base (the credit already
    # carries the tax treatment of the credit note it came from).
    is_settlement = models.BooleanField(default=False)

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "position"], name="invoiceline_position"),
        ]

    def __str__(self) -> str:
        return self.description


class InvoiceCounter(models.Model):
    """The last invoice number of a year; locked while a number is taken, so none is skipped."""

    year = models.PositiveSmallIntegerField(primary_key=True)
    last_number = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.year}: {self.last_number}"


class InvoiceStatusChange(models.Model):
    """The audit trail of an invoice's states."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="status_changes")
    from_status = models.CharField(max_length=22)
    to_status = models.CharField(max_length=22)
    reason = models.CharField(max_length=200, blank=True)
    at = models.DateTimeField()

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.invoice}: {self.from_status} → {self.to_status}"


class UsageClose(models.Model):
    """A monthly usage period that was closed and invoiced, with the units billed per meter.

    Usage that becomes final later (late events, F6) is the difference between the period's
    units now and `billed_units`; it goes on the next invoice, and `billed_units` follows.
    """

    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="closes")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    closed_at = models.DateTimeField()
    invoice = models.OneToOneField(Invoice, on_delete=models.PROTECT, related_name="usage_close")
    billed_units = models.JSONField(default=dict, help_text="Units billed per meter so far.")
    # The terms the period was priced on and its billing cycle (plans.pricing.terms_snapshot):
    # late usage (F6) and the cycle-end Voice/SMS months (P4) are rated on them, never on the
    # subscription as it is today. Empty on closes written before it was kept.
    terms = models.JSONField(
        null=True, blank=True, help_text="The plan, add-on tiers and edition of the period."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "period_start"], name="usageclose_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subscription} {self.period_start:%Y-%m-%d}"


class ThresholdNotice(models.Model):
    """An allowance's 50 %, 80 % or 100 % email, sent once per period."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE)
    period_start = models.DateTimeField()
    meter = models.CharField(max_length=32)
    threshold = models.PositiveSmallIntegerField()
    sent_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "period_start", "meter", "threshold"], name="threshold_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account.slug} {self.meter} {self.threshold}%"


class PaymentMethod(models.Model):
    """A card saved at Stripe (collected by Stripe.js or given by a partner); never card data."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="payment_methods")
    stripe_id = models.CharField(max_length=64, unique=True)
    brand = models.CharField(max_length=20, blank=True)
    last4 = models.CharField(max_length=4, blank=True)
    exp_month = models.PositiveSmallIntegerField(null=True, blank=True)
    exp_year = models.PositiveSmallIntegerField(null=True, blank=True)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account"], condition=Q(is_default=True), name="paymentmethod_one_default"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.brand.title()} •••• {self.last4}"


class AttemptStatus(models.TextChoices):
    CREATED = "created"  # saved before the call to Stripe; not claimed by a sender yet
    SENDING = "sending"  # claimed by one sender (conditional update) just before Stripe is called
    SUCCEEDED = "succeeded"
    REQUIRES_ACTION = "requires_action", "requires authentication"
    FAILED = "failed"
    UNKNOWN = "unknown"  # the call's outcome was lost (timeout): resolved by asking Stripe
    # A payment waiting for the customer, cancelled at Stripe before a new one was made (the
    # card changed, the link expired): its link can no longer confirm anything.
    CANCELED = "canceled", "replaced"


# What asked for an attempt (`PaymentAttempt.trigger`), in the words the console shows. The
# first attempt of an invoice is its first charge whoever made it: an upgrade paid at once is
# "first charge (upgrade)", never a retry (attempts recorded before "upgrade" and "restart"
# existed carry "retry" and read "first charge (by the merchant)").
FIRST_CHARGE_WORDS = {
    "automatic": "first charge (automatic)",  # the collection sweep, once the invoice is issued
    "upgrade": "first charge (upgrade)",  # the merchant's upgrade, paid at once (P6)
    "restart": "first charge (started again)",  # starting again after the end (P1)
    "retry": "first charge (by the merchant)",  # Pay on the page, or the partner API
    "operator": "first charge (by an operator)",
}
CHARGE_AGAIN_WORDS = {
    "automatic_retry": "automatic retry",  # the retry schedule (F3)
    "automatic": "automatic charge",  # the sweep: a card saved at last, a hold released
    "retry": "retry by the merchant",
    "operator": "retry by an operator",
}


class PaymentAttempt(models.Model):
    """One try to charge an invoice. The idempotency key is derived from the invoice and the
    attempt number and saved before Stripe is called, so a retried task never charges twice."""

    Status = AttemptStatus

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="attempts")
    number = models.PositiveSmallIntegerField()
    trigger = models.CharField(max_length=20, help_text="automatic, retry, manual, confirmation")
    idempotency_key = models.CharField(max_length=80, unique=True)
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    payment_method = models.CharField(
        max_length=64, blank=True, help_text="The card charged: a re-send carries the same body."
    )
    status = models.CharField(
        max_length=16, choices=AttemptStatus.choices, default=AttemptStatus.CREATED
    )
    stripe_payment_intent = models.CharField(max_length=64, blank=True, db_index=True)
    client_secret = models.CharField(max_length=200, blank=True)
    failure_code = models.CharField(max_length=60, blank=True)
    failure_reason = models.CharField(
        max_length=300, blank=True, help_text="In words a merchant understands."
    )
    is_hard_decline = models.BooleanField(default=False)
    created_at = models.DateTimeField()
    sending_at = models.DateTimeField(
        null=True, blank=True, help_text="When a sender claimed it; a stale claim is reconciled."
    )
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["invoice", "number"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "number"], name="attempt_number_once"),
            # At most one attempt per invoice waits for Stripe's answer: the database, not
            # only the code, refuses a second charge in flight.
            models.UniqueConstraint(
                fields=["invoice"],
                condition=Q(status__in=["created", "sending", "unknown"]),
                name="attempt_one_in_flight",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.invoice} attempt {self.number}: {self.status}"

    @property
    def trigger_words(self) -> str:
        """ "first charge (upgrade)", "automatic retry", "retry by an operator"."""
        who = self.trigger.replace("_", " ")
        if self.number == 1:
            return FIRST_CHARGE_WORDS.get(self.trigger, f"first charge ({who})")
        return CHARGE_AGAIN_WORDS.get(self.trigger, f"charged again ({who})")


class Dunning(models.Model):
    """Where an unpaid invoice stands in its retry and reminder schedules (F2, F3, F4)."""

    invoice = models.OneToOneField(Invoice, on_delete=models.CASCADE, related_name="dunning")
    first_failed_at = models.DateTimeField(null=True, blank=True)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    confirmation_requested_at = models.DateTimeField(null=True, blank=True)
    reminders_sent = models.PositiveSmallIntegerField(default=0)
    next_reminder_at = models.DateTimeField(null=True, blank=True)
    suspend_at = models.DateTimeField(null=True, blank=True)
    held_reason = models.CharField(max_length=200, blank=True, help_text="Not charged: why (P8).")
    held_at = models.DateTimeField(null=True, blank=True, help_text="When it was held (P8).")
    hold_released_at = models.DateTimeField(
        null=True, blank=True, help_text="An operator approved the charge over the cap (P8)."
    )
    paused_until = models.DateTimeField(
        null=True, blank=True, help_text="An operator paused retries, reminders and suspension."
    )
    link_sent_at = models.DateTimeField(
        null=True, blank=True, help_text="The confirmation link was last emailed (F2)."
    )
    card_requested_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="No card to charge: the customer was asked for one; collection waits for it.",
    )

    class Meta:
        indexes = [
            models.Index(fields=["next_retry_at"], name="dunning_retry_idx"),
            models.Index(fields=["next_reminder_at"], name="dunning_reminder_idx"),
            models.Index(fields=["suspend_at"], name="dunning_suspend_idx"),
        ]

    def __str__(self) -> str:
        return f"dunning of {self.invoice}"


class StripeEvent(models.Model):
    """A webhook delivery, stored once per Stripe event id before it is processed."""

    stripe_id = models.CharField(max_length=64, unique=True)
    type = models.CharField(max_length=80)
    payload = models.JSONField()
    received_at = models.DateTimeField()
    processed_at = models.DateTimeField(null=True, blank=True)
    # Processing that failed is retried with backoff by the sweeper, never dropped.
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(processed_at__isnull=True),
                name="stripe_event_unprocessed_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.stripe_id}"


class AccountCredit(models.Model):
    """Money owed to the account, applied to its next invoices: a close that a correction made
    negative (never a negative invoice), or a credit note on an invoice already paid."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="credits")
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    amount_minor = models.BigIntegerField()
    remaining_minor = models.BigIntegerField()
    source = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credits_given")
    description = models.CharField(max_length=300)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(
                fields=["account"],
                condition=Q(remaining_minor__gt=0),
                name="credit_open_idx",
            )
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(remaining_minor__gte=0, remaining_minor__lte=models.F("amount_minor")),
                name="credit_remaining_in_range",
            )
        ]

    def __str__(self) -> str:
        return f"credit of {self.amount_minor} {self.currency} ({self.remaining_minor} left)"


class CreditUse(models.Model):
    """Account credit spent on an invoice: which credit, which invoice, the line that takes it
    off, how much. The ledger the statement reads; the line's description is only its words."""

    credit = models.ForeignKey(AccountCredit, on_delete=models.PROTECT, related_name="uses")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_uses")
    # PROTECT: lines are immutable once issued (F5); deleting one must not silently drop a use.
    line = models.OneToOneField(InvoiceLine, on_delete=models.PROTECT, related_name="credit_use")
    amount_minor = models.BigIntegerField()
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="credituse_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.amount_minor} of credit {self.credit_id} on invoice {self.invoice_id}"


class CloseSetAside(models.Model):
    """A subscription whose billing step raised: recorded for operators, retried with backoff,
    and never blocking the other subscriptions of a run."""

    subscription = models.OneToOneField(
        Subscription, on_delete=models.CASCADE, related_name="billing_set_aside"
    )
    step = models.CharField(max_length=20, help_text="start invoice or period close")
    error = models.TextField()
    attempts = models.PositiveSmallIntegerField(default=1)
    first_failed_at = models.DateTimeField()
    next_attempt_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.subscription} set aside at {self.step}: {self.error[:60]}"


# --- the Shopify channel (docs/shopify.md) -----------------------------------------------------


class ShopifyStatus(models.TextChoices):
    """Shopify's AppSubscriptionStatus, as Shopify names it. Only ACTIVE bills; FROZEN is
    Shopify-side non-payment (it re-activates when the merchant pays Shopify)."""

    PENDING = "PENDING", "waiting for the merchant's approval"
    ACTIVE = "ACTIVE", "active"
    DECLINED = "DECLINED", "declined by the merchant"
    EXPIRED = "EXPIRED", "not approved within two days"
    FROZEN = "FROZEN", "frozen by Shopify (unpaid Shopify bill)"
    CANCELLED = "CANCELLED", "cancelled"
    # A replacement approved with APPLY_ON_NEXT_BILLING_CYCLE: Shopify starts billing it (it
    # becomes ACTIVE) when the subscription it replaces reaches its interval's end.
    ACCEPTED = "ACCEPTED", "approved; starts with the next 30-day cycle"


SHOPIFY_LIVE = (ShopifyStatus.ACTIVE, ShopifyStatus.FROZEN)
SHOPIFY_TERMINAL = (ShopifyStatus.DECLINED, ShopifyStatus.EXPIRED, ShopifyStatus.CANCELLED)


class ShopifySubscription(models.Model):
    """One app subscription at Shopify (one appSubscriptionCreate). A plan change creates a new
    one that replaces the old once the merchant approves it; the old row stays as history.

    `terms` is what we asked Shopify to bill (plan, add-ons, the 30-day fee, and for a change the
    request to apply once approved); Shopify's own figures (status, cap, balance used, period
    end) are mirrored from its answers and webhooks and never computed here."""

    Status = ShopifyStatus

    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="shopify_subscriptions"
    )
    subscription = models.ForeignKey(
        Subscription,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="shopify_subscriptions",
        help_text="Our subscription it bills (set once Shopify says ACTIVE).",
    )
    replaces = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="replaced_by"
    )
    gid = models.CharField(max_length=120, unique=True, help_text="gid://shopify/AppSubscription/…")
    name = models.CharField(max_length=255)
    status = models.CharField(max_length=10, choices=ShopifyStatus.choices)
    replacement_behavior = models.CharField(max_length=30, blank=True)
    terms = models.JSONField(default=dict)
    currency = models.CharField(max_length=3)
    recurring_line_gid = models.CharField(max_length=120, blank=True)
    recurring_amount_minor = models.BigIntegerField(default=0)
    usage_line_gid = models.CharField(max_length=120, blank=True)
    usage_terms = models.CharField(max_length=500, blank=True)
    capped_amount_minor = models.BigIntegerField(default=0)
    balance_used_minor = models.BigIntegerField(default=0)
    confirmation_url = models.URLField(max_length=2000, blank=True)
    cap_requested_minor = models.BigIntegerField(
        null=True, blank=True, help_text="A higher cap asked for, waiting for the merchant."
    )
    cap_confirmation_url = models.URLField(max_length=2000, blank=True)
    cap_requested_at = models.DateTimeField(null=True, blank=True)
    approaching_cap_at = models.DateTimeField(
        null=True, blank=True, help_text="When Shopify said 90 % of the cap was used."
    )
    current_period_end = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    activated_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=ShopifyStatus.values), name="shopifysub_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(capped_amount_minor__gte=0) & Q(balance_used_minor__gte=0),
                name="shopifysub_amounts_not_negative",
            ),
        ]
        indexes = [models.Index(fields=["account", "status"], name="shopifysub_account_status")]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_status_display()})"

    @property
    def remaining_minor(self) -> int:
        """What the usage line can still take this Shopify interval."""
        return max(0, self.capped_amount_minor - self.balance_used_minor)


class UsageRecordStatus(models.TextChoices):
    CREATED = "created"  # written with its key, not yet claimed
    SENDING = "sending"  # claimed: one caller is posting it to Shopify
    UNKNOWN = "unknown"  # the answer was lost: settled by asking Shopify (reconcile)
    POSTED = "posted"  # Shopify has it (shopify_gid)
    HELD = "held"  # over the approved cap: posted once the merchant raises it (P8)
    FAILED = "failed"  # Shopify refused it for another reason: an operator looks


class ShopifyUsageRecord(models.Model):
    """A part of an invoice line billed through Shopify: one appUsageRecordCreate.

    Moving money on this channel is posting these, and it goes like a charge: the row and its
    idempotency key (derived from the line and the part, never from an attempt) are committed
    first, the row is claimed `created → sending` by one caller, and only the claimant calls
    Shopify; a lost answer is settled by asking Shopify, and a retry reuses the key so Shopify
    replays its first answer. What does not fit under the cap is a `held` part, posted after a
    raise: usage is never dropped."""

    Status = UsageRecordStatus

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="usage_records")
    line = models.ForeignKey(InvoiceLine, on_delete=models.PROTECT, related_name="usage_records")
    part = models.PositiveSmallIntegerField(default=1)
    shopify_subscription = models.ForeignKey(
        ShopifySubscription,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="usage_records",
    )
    idempotency_key = models.CharField(max_length=255, unique=True)
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    description = models.CharField(max_length=255)
    status = models.CharField(
        max_length=8, choices=UsageRecordStatus.choices, default=UsageRecordStatus.CREATED
    )
    shopify_gid = models.CharField(max_length=120, blank=True)
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField()
    sending_at = models.DateTimeField(null=True, blank=True)
    posted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["line", "part"], name="usagerecord_line_part"),
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="usagerecord_positive"),
            models.CheckConstraint(
                condition=Q(status__in=UsageRecordStatus.values), name="usagerecord_status_valid"
            ),
        ]
        indexes = [models.Index(fields=["status"], name="usagerecord_status")]

    def __str__(self) -> str:
        return f"{self.idempotency_key} {self.amount_minor} {self.currency} ({self.status})"


class ShopifyWebhook(models.Model):
    """A webhook from Shopify, stored (unique per X-Shopify-Webhook-Id) before it is processed,
    then retried with backoff like Stripe's events when processing fails."""

    webhook_id = models.CharField(max_length=120, unique=True)
    topic = models.CharField(max_length=80)
    shop_domain = models.CharField(max_length=253)
    payload = models.JSONField()
    received_at = models.DateTimeField()
    processed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"{self.topic} from {self.shop_domain} ({self.webhook_id})"


class ShopifyPlanCap(models.Model):
    """A plan's approved usage cap per 30 days on the Shopify channel, when the default
    (settings.SHOPIFY_DEFAULT_CAPPED_AMOUNT_MINOR) does not suit it; an account's own cap
    (ShopifyShop.capped_amount_minor) wins over this one. Edited by operators in the admin."""

    plan = models.ForeignKey("plans.Plan", on_delete=models.CASCADE, related_name="shopify_caps")
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    capped_amount_minor = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["plan", "currency"], name="shopifyplancap_one"),
            models.CheckConstraint(
                condition=Q(capped_amount_minor__gt=0), name="shopifyplancap_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.plan} {self.currency}: {self.capped_amount_minor}"


class RefundStatus(models.TextChoices):
    CREATED = "created"  # saved with its credit note, before Stripe is called; not claimed yet
    SENDING = "sending"  # claimed by one sender (conditional update) just before Stripe is called
    PENDING = "pending"  # Stripe took it; the card's bank has not confirmed it yet
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # Stripe refused it or the bank returned it: its amount is account credit
    UNKNOWN = "unknown"  # the call's outcome was lost: settled by asking Stripe (reconcile)
    CANCELED = "canceled"  # cancelled at Stripe: its amount is account credit, as when it fails


class Refund(models.Model):
    """Money of a paid invoice going back to the card that paid it: the part of a credit note
    that is not account credit. Made like a charge: the row and its idempotency key (from our
    own rows) are committed with the credit note, then claimed `created → sending` by one
    sender, the only one that calls Stripe; a lost answer is settled by asking Stripe."""

    Status = RefundStatus

    credit_note = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="refunds")
    attempt = models.ForeignKey(
        PaymentAttempt,
        on_delete=models.PROTECT,
        related_name="refunds",
        help_text="The succeeded charge it gives money back from.",
    )
    amount_minor = models.BigIntegerField(help_text="Tax included: part of the note's total.")
    currency = models.CharField(max_length=3)
    status = models.CharField(
        max_length=10, choices=RefundStatus.choices, default=RefundStatus.CREATED
    )
    idempotency_key = models.CharField(max_length=80, unique=True)
    stripe_refund_id = models.CharField(max_length=64, blank=True, db_index=True)
    failure_reason = models.CharField(
        max_length=300, blank=True, help_text="In words a merchant and an operator understand."
    )
    created_at = models.DateTimeField()
    sending_at = models.DateTimeField(
        null=True, blank=True, help_text="When a sender claimed it; a stale claim is reconciled."
    )
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["credit_note", "pk"]
        constraints = [
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="refund_positive"),
            models.CheckConstraint(
                condition=Q(status__in=RefundStatus.values), name="refund_status_valid"
            ),
            # One refund per note and charge: the idempotency key is derived from the pair.
            models.UniqueConstraint(fields=["credit_note", "attempt"], name="refund_note_charge"),
        ]
        indexes = [models.Index(fields=["status"], name="refund_status")]

    def __str__(self) -> str:
        return f"{self.idempotency_key} {self.amount_minor} {self.currency} ({self.status})"


class DisputeStatus(models.TextChoices):
    """Stripe's own statuses of a dispute (an inquiry is a `warning_*` one: no money moved)."""

    WARNING_NEEDS_RESPONSE = "warning_needs_response", "inquiry: needs a response"
    WARNING_UNDER_REVIEW = "warning_under_review", "inquiry: under review"
    WARNING_CLOSED = "warning_closed", "inquiry: closed"
    NEEDS_RESPONSE = "needs_response", "needs a response"
    UNDER_REVIEW = "under_review", "under review"
    WON = "won"
    LOST = "lost"
    PREVENTED = "prevented"


class DisputeDecision(models.TextChoices):
    """What an operator decided for an account whose dispute was lost."""

    NONE = "", "not decided"
    ANOTHER_CARD = "another_card", "ask for another card"
    SUSPEND = "suspend", "suspend"
    WRITE_OFF = "write_off", "write off"


class Dispute(models.Model):
    """A card dispute (a chargeback) of one of our charges, as Stripe holds it now: every
    `charge.dispute.*` webhook reads the dispute back from Stripe and writes it here
    (billing.disputes), so replays and late deliveries converge on Stripe's latest state."""

    Status = DisputeStatus
    Decision = DisputeDecision

    attempt = models.ForeignKey(
        PaymentAttempt,
        on_delete=models.PROTECT,
        related_name="disputes",
        help_text="The succeeded charge the card's bank disputes.",
    )
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="disputes")
    stripe_dispute_id = models.CharField(max_length=64, unique=True)
    reason = models.CharField(max_length=40, blank=True, help_text="Stripe's: fraudulent, ...")
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    fee_minor = models.BigIntegerField(
        default=0,
        help_text="Stripe's dispute fee, from its balance transactions (net of any back).",
    )
    status = models.CharField(max_length=30, choices=DisputeStatus.choices)
    evidence_due_by = models.DateTimeField(null=True, blank=True)
    is_charge_refundable = models.BooleanField(default=False)
    funds_withdrawn_at = models.DateTimeField(null=True, blank=True)
    funds_reinstated_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    decision = models.CharField(
        max_length=20, choices=DisputeDecision.choices, default=DisputeDecision.NONE, blank=True
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    payload = models.JSONField(default=dict, help_text="The dispute as Stripe last returned it.")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(condition=Q(amount_minor__gte=0), name="dispute_amount"),
            models.CheckConstraint(
                condition=Q(status__in=DisputeStatus.values), name="dispute_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(decision__in=DisputeDecision.values), name="dispute_decision_valid"
            ),
        ]
        indexes = [models.Index(fields=["status"], name="dispute_status")]

    def __str__(self) -> str:
        return f"{self.stripe_dispute_id} {self.amount_minor} {self.currency} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status not in DISPUTE_CLOSED


# Stripe's final statuses; `lost` is the one where the money stays with the card's bank.
DISPUTE_CLOSED = (
    DisputeStatus.WON,
    DisputeStatus.LOST,
    DisputeStatus.WARNING_CLOSED,
    DisputeStatus.PREVENTED,
)


class TicketDisputeReason(models.TextChoices):
    """Why a merchant says a billed ticket should not have been billed."""

    SPAM = "spam"
    DUPLICATE = "duplicate", "duplicate or merged"
    AUTO_REPLY_LOOP = "auto_reply_loop", "auto-reply loop"
    TEST = "test", "test or internal"
    NOT_A_CUSTOMER = "not_a_customer", "not a customer"
    OTHER = "other"


class TicketDisputeStatus(models.TextChoices):
    OPEN = "open", "waiting for a decision"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class TicketDisputeOutcome(models.TextChoices):
    """What an accepted dispute did to the money (billing.ticket_disputes)."""

    NONE = "", "not decided"
    EXCLUDED = "excluded", "excluded before its period closed: the period is rated without it"
    CREDITED = "credited", "credited: a credit note gives back what it cost"
    ALLOWANCE_RESTORED = "allowance_restored", "allowance restored, no charge change"


class TicketDispute(models.Model):
    """A merchant's claim that one billed ticket should not have been billed (spam, a loop, a
    test...), and its decision. One open dispute per ticket; accepted, the ticket is excluded
    from billing (metering.UsageExclusion) and, when its period was already invoiced and it
    made money, credited (billing.ticket_disputes)."""

    Reason = TicketDisputeReason
    Status = TicketDisputeStatus
    Outcome = TicketDisputeOutcome

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="ticket_disputes")
    ticket = models.CharField(max_length=255)
    reason = models.CharField(max_length=20, choices=TicketDisputeReason.choices)
    comment = models.CharField(max_length=1000, blank=True)
    status = models.CharField(
        max_length=10, choices=TicketDisputeStatus.choices, default=TicketDisputeStatus.OPEN
    )
    outcome = models.CharField(
        max_length=20,
        choices=TicketDisputeOutcome.choices,
        default=TicketDisputeOutcome.NONE,
        blank=True,
    )
    filed_by = models.CharField(max_length=200, help_text="Who contested: a member or a key.")
    decided_by = models.CharField(max_length=200, blank=True)
    decision = models.CharField(
        max_length=1000, blank=True, help_text="Why it was accepted or rejected, shown as is."
    )
    credit_note = models.ForeignKey(
        Invoice, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    credited_minor = models.BigIntegerField(default=0, help_text="Before tax.")
    created_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "ticket"],
                condition=Q(status="open"),
                name="ticket_dispute_one_open",
            ),
            models.CheckConstraint(
                condition=Q(reason__in=TicketDisputeReason.values), name="ticket_dispute_reason"
            ),
            models.CheckConstraint(
                condition=Q(status__in=TicketDisputeStatus.values), name="ticket_dispute_status"
            ),
        ]
        indexes = [
            models.Index(fields=["account", "ticket"], name="ticket_dispute_ticket"),
            models.Index(
                fields=["created_at"], name="ticket_dispute_queue", condition=Q(status="open")
            ),
        ]

    def __str__(self) -> str:
        return f"ticket {self.ticket}: {self.status}"

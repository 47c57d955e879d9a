"""The console's forms: filters of the queue and the actions' confirmations. Every action
form asks for a reason; the values are checked here, at the edge, in words."""

from decimal import Decimal, InvalidOperation

from django import forms

from accounts.models import CURRENCY_CHOICES, BillingChannel, TaxIdStatus
from accounts.validators import WindowedDateField, multi_line_text, plain_text
from billing.models import Invoice
from plans.money import MoneyError, currency_exponent, format_money, to_minor

from .selectors import CreditRoom, credit_room


class QueueFilter(forms.Form):
    ATTENTION = [
        ("", "Everything"),
        ("past_due", "Past due"),
        ("requires_confirmation", "Waiting for confirmation"),
        ("held", "Held over the cap (P8), Shopify's included"),
        ("unknown", "Payment outcome unknown"),
        ("refund_failed", "Refund failed or unanswered"),
        ("dispute", "Card dispute open, or lost and undecided"),
    ]
    SORTS = [
        ("score", "Amount × age"),
        ("amount", "Amount"),
        ("age", "Oldest first"),
        ("recent", "Newest first"),
    ]
    q = forms.CharField(
        label="Search",
        required=False,
        max_length=100,
        widget=forms.TextInput(
            attrs={"placeholder": "Account, invoice number, Stripe id or shop domain"}
        ),
    )
    attention = forms.ChoiceField(label="Needs", choices=ATTENTION, required=False)
    channel = forms.ChoiceField(
        label="Pays",
        choices=[("", "Any way")] + list(BillingChannel.choices),
        required=False,
    )
    currency = forms.ChoiceField(
        label="Currency", choices=[("", "Any")] + list(CURRENCY_CHOICES), required=False
    )
    plan = forms.CharField(label="Plan", required=False, max_length=40)
    partner = forms.CharField(label="Partner", required=False, max_length=120)
    tax_id_status = forms.ChoiceField(
        label="VAT id",
        choices=[("", "Any")] + list(TaxIdStatus.choices),
        required=False,
    )
    min_amount = forms.DecimalField(
        label="Amount at least", required=False, min_value=0, decimal_places=2, max_digits=14
    )
    min_age_days = forms.IntegerField(label="Older than (days)", required=False, min_value=0)
    sort = forms.ChoiceField(label="Sort", choices=SORTS, required=False)


class ActionForm(forms.Form):
    reason = forms.CharField(
        label="Reason (kept in the audit log)",
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2}),
        error_messages={"required": "Say why: a reason is required."},
        validators=[multi_line_text],
    )

    def __init__(self, *args, currency: str = "USD", target: object = None, **kwargs):
        self.currency = currency
        self.target = target  # what the action acts on (an invoice, a subscription, an account)
        super().__init__(*args, **kwargs)

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("Say why: a reason is required.")
        return reason


class TicketRejectForm(ActionForm):
    """Rejecting a contested ticket: the reason is the merchant's to read (the Why page, the
    email), and the audit row keeps it too."""

    reason = forms.CharField(
        label="Why it stays billed (the merchant reads this)",
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3}),
        error_messages={"required": "Say why, in words the merchant will read."},
        validators=[multi_line_text],
    )

    def clean_reason(self) -> str:
        reason = " ".join(self.cleaned_data["reason"].split())
        if not reason:
            raise forms.ValidationError("Say why, in words the merchant will read.")
        return reason


class PauseForm(ActionForm):
    until = WindowedDateField(
        label="Pause until (date, UTC)", widget=forms.DateInput(attrs={"type": "date"})
    )


class MarkPaidForm(ActionForm):
    reference = forms.CharField(
        label="Payment reference (e.g. the bank transfer's)",
        max_length=100,
        validators=[plain_text],
    )


class CreditForm(ActionForm):
    # Before tax: billing.invoicing.credit_note_issue adds the invoice's VAT in proportion, so
    # an operator who typed a total including VAT would give back the VAT twice.
    amount = forms.CharField(label="Amount to credit, before tax", max_length=20)
    # What the customer reads: the credit note's line and PDF, the account credit it may
    # become. The reason above is the operator's, kept in the audit log only.
    description = forms.CharField(
        label="Description for the customer (printed on the credit note)",
        max_length=300,
        widget=forms.TextInput(attrs={"placeholder": "e.g. Goodwill credit for the outage"}),
        error_messages={"required": "Say what the credit is for: the customer reads it."},
        validators=[plain_text],
    )
    # Tax included, like the money the card was charged: this part of the credit note's total
    # goes back to the card (billing.refunds), the rest becomes the account's credit.
    refund = forms.CharField(
        label="Refund to the card, tax included",
        max_length=20,
        required=False,
        initial="0",
        help_text=(
            "Only on a paid invoice. What is not refunded to the card becomes the account's "
            "credit, taken off its next invoices."
        ),
    )
    field_order = ["amount", "refund", "description", "reason"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.room = credit_room(self.target) if isinstance(self.target, Invoice) else None
        if self.room is not None:
            self.fields["amount"].help_text = credit_help(room=self.room, currency=self.currency)

    def clean_refund(self) -> int:
        raw = (self.cleaned_data.get("refund") or "0").strip().replace(",", "")
        try:
            minor = to_minor(Decimal(raw), self.currency)
        except (InvalidOperation, MoneyError):
            minor = -1
        if minor < 0:
            raise forms.ValidationError(
                f"Write the amount to refund in {self.currency} (0 for none), e.g. 12.50."
            )
        if minor and isinstance(self.target, Invoice) and self.target.status != "paid":
            raise forms.ValidationError(
                "Only a paid invoice's money can go back to the card: leave 0 (the credit is "
                "taken off what the invoice asks)."
            )
        return minor

    def clean_description(self) -> str:
        description = " ".join(self.cleaned_data["description"].split())
        if not description:
            raise forms.ValidationError("Say what the credit is for: the customer reads it.")
        return description

    def clean_amount(self) -> int:
        raw = self.cleaned_data["amount"].strip().replace(",", "")
        try:
            minor = to_minor(Decimal(raw), self.currency)
        except (InvalidOperation, MoneyError):
            minor = 0
        if minor <= 0:
            raise forms.ValidationError(
                f"Write a positive amount in {self.currency} with at most "
                f"{currency_exponent(self.currency)} decimals, e.g. 12.50."
            )
        if self.room is not None and minor > self.room.creditable_minor:
            most = format_money(self.room.creditable_minor, self.currency)
            raise forms.ValidationError(f"At most {most} before tax is left to credit.")
        return minor


def credit_help(*, room: CreditRoom, currency: str) -> str:
    """The credit form's help: the most it may take, and the VAT the note adds to it."""
    most = format_money(room.creditable_minor, currency)
    words = f"At most {most} before tax (what earlier credit notes left of this invoice)."
    if room.charged_vat:
        words += (
            " The invoice charged VAT: the credit note adds its VAT in proportion, so its "
            "total is larger than the amount written here."
        )
    return words


class ChannelForm(ActionForm):
    """Move an account to the other billing channel; a shop is needed to move to Shopify."""

    to = forms.ChoiceField(label="Pays", choices=BillingChannel.choices)
    shop_domain = forms.CharField(
        label="Shop domain (to Shopify)",
        required=False,
        max_length=253,
        widget=forms.TextInput(attrs={"placeholder": "name.myshopify.com"}),
        validators=[plain_text],
    )
    # Write-only: never rendered back, never logged or kept in the audit row.
    access_token = forms.CharField(
        label="The app's access token for the shop (to Shopify)",
        required=False,
        max_length=255,
        widget=forms.PasswordInput(render_value=False),
    )
    field_order = ["to", "shop_domain", "access_token", "reason"]

    def clean(self):
        data = super().clean()
        if data.get("to") == BillingChannel.SHOPIFY and not (
            data.get("shop_domain") and data.get("access_token")
        ):
            raise forms.ValidationError(
                "To move to Shopify, give the shop's domain and the app's access token."
            )
        return data

"""Invoices are records: operators read them here, read-only and undeletable; corrections and
collection go through the operator console (/console/), never edits (F5)."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from plans.money import format_money

from .models import (
    AccountCredit,
    CloseSetAside,
    Dunning,
    Invoice,
    InvoiceCounter,
    InvoiceLine,
    InvoiceStatusChange,
    PaymentAttempt,
    PaymentMethod,
    ShopifyPlanCap,
    StripeEvent,
    ThresholdNotice,
    UsageClose,
)


def money(field: str, description: str, currency_from: str = "currency"):
    """An admin column showing integer minor units as money: 342005 → "$3,420.05"."""

    @admin.display(description=description, ordering=field)
    def show(self, obj) -> str:
        currency = obj
        for part in currency_from.split("__"):
            currency = getattr(currency, part)
        return format_money(int(getattr(obj, field)), currency)

    return show


def console_link(invoice_id: int | None) -> str:
    if invoice_id is None:
        return ""
    return format_html(
        '<a href="{}">Open in the console</a>', reverse("console:invoice", args=[invoice_id])
    )


class ReadOnly:
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class InvoiceLineInline(ReadOnly, admin.TabularInline):
    model = InvoiceLine
    fields = ["position", "description", "quantity", "unit_price_minor", "amount", "rules"]
    readonly_fields = ["amount"]
    amount = money("amount_minor", "amount", "invoice__currency")


class StatusChangeInline(ReadOnly, admin.TabularInline):
    model = InvoiceStatusChange
    fields = ["at", "from_status", "to_status", "reason"]


class HeldFilter(admin.SimpleListFilter):
    """Invoices not charged because they are over the account's spending cap (P8)."""

    title = "held (P8)"
    parameter_name = "held"

    def lookups(self, request, model_admin):
        return [("yes", "held")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(dunning__held_reason__gt="")
        return queryset


@admin.register(Invoice)
class InvoiceAdmin(ReadOnly, admin.ModelAdmin):
    # Few, short columns: the list fits 1280 px; the rest is on the invoice and the console.
    list_display = [
        "number",
        "account",
        "reason",
        "status",
        "total",
        "issued_at",
        "held",
        "console",
    ]
    list_filter = ["status", "kind", "reason", "currency", HeldFilter]
    list_select_related = ["account", "dunning"]
    search_fields = ["number", "account__slug", "account__name"]
    date_hierarchy = "issued_at"
    inlines = [InvoiceLineInline, StatusChangeInline]
    readonly_fields = ["total", "console"]
    total = money("total_minor", "total")

    @admin.display(description="")
    def console(self, invoice: Invoice) -> str:
        return console_link(invoice.pk)

    @admin.display(description="held (P8)")
    def held(self, invoice: Invoice) -> str:
        dunning = getattr(invoice, "dunning", None)
        return dunning.held_reason if dunning is not None else ""


@admin.register(UsageClose)
class UsageCloseAdmin(ReadOnly, admin.ModelAdmin):
    list_display = [
        "subscription",
        "period_start",
        "period_end",
        "closed_at",
        "invoice",
        "billed_units",
    ]
    search_fields = ["subscription__account__slug"]


@admin.register(ThresholdNotice)
class ThresholdNoticeAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["account", "meter", "threshold", "period_start", "sent_at"]
    list_filter = ["meter", "threshold"]
    search_fields = ["account__slug"]


@admin.register(InvoiceCounter)
class InvoiceCounterAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["year", "last_number"]


@admin.register(CloseSetAside)
class CloseSetAsideAdmin(ReadOnly, admin.ModelAdmin):
    """Subscriptions whose billing step raised: what broke and when it is tried again."""

    list_display = ["subscription", "step", "attempts", "first_failed_at", "next_attempt_at"]
    readonly_fields = ["subscription", "step", "error", "attempts", "first_failed_at"]


@admin.register(PaymentAttempt)
class PaymentAttemptAdmin(ReadOnly, admin.ModelAdmin):
    list_display = [
        "invoice",
        "number",
        "trigger",
        "status",
        "amount",
        "failure_code",
        "created_at",
    ]
    list_filter = ["status", "trigger"]
    list_select_related = ["invoice"]
    search_fields = ["invoice__number", "stripe_payment_intent", "idempotency_key"]
    amount = money("amount_minor", "amount")


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["stripe_id", "type", "received_at", "processed_at", "attempts", "last_error"]
    list_filter = ["type"]
    search_fields = ["stripe_id"]


@admin.register(AccountCredit)
class AccountCreditAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["account", "amount", "remaining", "source", "created_at"]
    amount = money("amount_minor", "amount")
    remaining = money("remaining_minor", "remaining")


@admin.register(Dunning)
class DunningAdmin(ReadOnly, admin.ModelAdmin):
    """Where unpaid invoices stand in their schedules; paused or released from the console."""

    list_display = [
        "invoice",
        "next_retry_at",
        "next_reminder_at",
        "suspend_at",
        "paused_until",
        "held_reason",
        "console",
    ]
    list_select_related = ["invoice"]
    search_fields = ["invoice__number", "invoice__account__slug"]

    @admin.display(description="")
    def console(self, dunning: Dunning) -> str:
        return console_link(dunning.invoice_id)


@admin.register(PaymentMethod)
class PaymentMethodAdmin(ReadOnly, admin.ModelAdmin):
    """Cards saved at Stripe (never card data); set by the merchant or the partner."""

    list_display = ["account", "__str__", "exp_month", "exp_year", "is_default", "created_at"]
    list_filter = ["is_default", "brand"]
    search_fields = ["account__slug", "stripe_id"]


@admin.register(InvoiceStatusChange)
class InvoiceStatusChangeAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["invoice", "from_status", "to_status", "reason", "at"]
    list_filter = ["to_status"]
    search_fields = ["invoice__number"]


@admin.register(ShopifyPlanCap)
class ShopifyPlanCapAdmin(admin.ModelAdmin):
    """Per-plan usage caps on the Shopify channel (docs/shopify.md, "The cap"): asked for in
    new app subscriptions of the plan; an account's own cap (its shop) wins."""

    list_display = ["plan", "currency", "cap"]
    list_filter = ["currency"]
    cap = money("capped_amount_minor", "cap per 30 days")

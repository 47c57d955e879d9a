"""Invoices are records: operators read them here; corrections go through credit notes
(`manage.py credit_invoice`), never edits (F5)."""

from django.contrib import admin

from .models import (
    AccountCredit,
    CloseSetAside,
    Invoice,
    InvoiceCounter,
    InvoiceLine,
    InvoiceStatusChange,
    PaymentAttempt,
    StripeEvent,
    ThresholdNotice,
    UsageClose,
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
    fields = ["position", "description", "quantity", "unit_price_minor", "amount_minor", "rules"]


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
    list_display = [
        "number",
        "account",
        "kind",
        "reason",
        "status",
        "total_minor",
        "currency",
        "period_start",
        "issued_at",
        "held",
    ]
    list_filter = ["status", "kind", "reason", "currency", HeldFilter]
    list_select_related = ["account", "dunning"]
    search_fields = ["number", "account__slug", "account__name"]
    date_hierarchy = "issued_at"
    inlines = [InvoiceLineInline, StatusChangeInline]

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
    list_display = ["invoice", "number", "status", "amount_minor", "currency", "failure_code"]
    list_filter = ["status"]
    search_fields = ["invoice__number", "stripe_payment_intent", "idempotency_key"]


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["stripe_id", "type", "received_at", "processed_at", "attempts", "last_error"]
    list_filter = ["type"]
    search_fields = ["stripe_id"]


@admin.register(AccountCredit)
class AccountCreditAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["account", "amount_minor", "remaining_minor", "currency", "source"]

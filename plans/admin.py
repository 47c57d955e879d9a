from django.contrib import admin

from .models import (
    AddOn,
    AddOnTier,
    Allowance,
    Edition,
    Plan,
    Price,
    ScheduledChange,
    Subscription,
    SubscriptionAddOn,
)


class PriceInline(admin.TabularInline):
    model = Price
    extra = 0
    fields = ["account", "currency", "interval", "component", "unit_amount_minor"]
    autocomplete_fields = ["account"]


class AllowanceInline(admin.TabularInline):
    model = Allowance
    extra = 0
    fields = ["account", "meter", "included", "overage_mode", "block_size"]
    autocomplete_fields = ["account"]


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "rank", "included_integrations", "is_custom", "is_active"]
    list_filter = ["is_custom", "is_active"]
    search_fields = ["code", "name"]
    inlines = [AllowanceInline, PriceInline]


class AddOnTierInline(admin.TabularInline):
    model = AddOnTier
    extra = 0
    show_change_link = True


@admin.register(AddOn)
class AddOnAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "meter", "is_active"]
    search_fields = ["code", "name"]
    inlines = [AddOnTierInline]


@admin.register(AddOnTier)
class AddOnTierAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "addon", "rank"]
    list_filter = ["addon"]
    search_fields = ["code", "name"]
    inlines = [AllowanceInline, PriceInline]


@admin.register(Edition)
class EditionAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "rank", "resolutions_per_agent_month", "yearly_resolution_cap"]
    search_fields = ["code", "name"]
    inlines = [PriceInline]


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    list_display = ["__str__", "currency", "interval", "component", "unit_amount_minor", "account"]
    list_filter = ["currency", "interval", "component", "plan", "edition"]
    search_fields = ["plan__code", "addon_tier__code", "edition__code", "account__slug"]
    autocomplete_fields = ["account"]


@admin.register(Allowance)
class AllowanceAdmin(admin.ModelAdmin):
    list_display = ["__str__", "meter", "included", "overage_mode", "block_size", "account"]
    list_filter = ["meter", "overage_mode"]
    autocomplete_fields = ["account"]


class _ShownOnly:
    """What a subscription pays for changes only through billing.changes.subscription_change
    (prorated invoice, scheduled downgrades): shown here, never edited."""

    extra = 0

    def has_add_permission(self, request, obj=None):
        return obj is None

    def has_change_permission(self, request, obj=None):
        return obj is None

    def has_delete_permission(self, request, obj=None):
        return False


class SubscriptionAddOnInline(_ShownOnly, admin.TabularInline):
    model = SubscriptionAddOn


class ScheduledChangeInline(_ShownOnly, admin.TabularInline):
    model = ScheduledChange
    readonly_fields = ["created_at", "resolved_at"]


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = [
        "account",
        "plan",
        "edition",
        "interval",
        "status",
        "current_period_start",
        "current_period_end",
    ]
    list_filter = ["status", "interval", "plan", "edition"]
    search_fields = ["account__slug", "account__name"]
    autocomplete_fields = ["account"]
    # Periods advance only through run_billing, and status only through its state machine.
    readonly_fields = [
        "status",
        "current_period_start",
        "current_period_end",
        "usage_period_start",
        "usage_period_end",
        "created_at",
    ]
    inlines = [SubscriptionAddOnInline, ScheduledChangeInline]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:  # a new subscription's first period is entered by the operator
            return ["status", "usage_period_start", "usage_period_end", "created_at"]
        # Plan, edition and interval change only through the change service (proration, P6/P7).
        return [
            *self.readonly_fields,
            "account",
            "billing_anchor",
            "started_at",
            "plan",
            "edition",
            "interval",
        ]

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ScheduledChange)
class ScheduledChangeAdmin(admin.ModelAdmin):
    list_display = ["subscription", "__str__", "effective_at", "status"]
    list_filter = ["status"]
    search_fields = ["subscription__account__slug"]
    readonly_fields = ["created_at", "resolved_at"]

"""Operators look at events and verdicts (read-only: they are the record) and may lift a pause."""

from django.contrib import admin

from .models import Charge, Entitlement, Event, Reevaluation, TicketMerge


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = [
        "event_id",
        "account",
        "type",
        "ticket",
        "session",
        "occurred_at",
        "received_at",
    ]
    list_filter = ["type", "channel", "author"]
    search_fields = ["event_id", "ticket", "session", "account__slug"]
    date_hierarchy = "occurred_at"
    show_full_result_count = False  # the table is large: skip the exact COUNT(*)


@admin.register(Charge)
class ChargeAdmin(ReadOnlyAdmin):
    list_display = [
        "subject",
        "subject_kind",
        "meter",
        "unit",
        "status",
        "billable_at",
        "period_start",
        "rules",
        "account",
    ]
    list_filter = ["meter", "status", "subject_kind"]
    search_fields = ["subject", "account__slug"]
    show_full_result_count = False


@admin.register(TicketMerge)
class TicketMergeAdmin(ReadOnlyAdmin):
    list_display = ["source", "into", "merged_at", "account"]
    search_fields = ["source", "into", "account__slug"]


@admin.register(Reevaluation)
class ReevaluationAdmin(ReadOnlyAdmin):
    list_display = ["subject", "kind", "account", "marked_at", "version", "claimed_at"]
    list_filter = ["kind"]
    search_fields = ["subject", "account__slug"]


@admin.register(Entitlement)
class EntitlementAdmin(admin.ModelAdmin):
    list_display = ["account", "feature", "state", "until", "reason", "updated_at"]
    list_filter = ["feature", "state"]
    search_fields = ["account__slug"]
    autocomplete_fields = ["account"]

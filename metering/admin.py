"""Operators look at events and verdicts (read-only and undeletable: they are the record) and
may lift a pause (audited)."""

from django.contrib import admin
from django.db import transaction
from django.utils import timezone

from audit.models import Source
from audit.services import acting_as, audit_record

from .models import ArchivedPartition, Charge, Entitlement, Event, Reevaluation, TicketMerge


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
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


@admin.register(ArchivedPartition)
class ArchivedPartitionAdmin(ReadOnlyAdmin):
    """Months archived by `manage.py partitions archive` (docs/operations.md): where each file
    is and how to check it. Restored with `manage.py partitions restore`."""

    list_display = ["table", "month", "rows", "path", "sha256", "archived_at", "restored_at"]
    list_filter = ["table"]


@admin.register(TicketMerge)
class TicketMergeAdmin(ReadOnlyAdmin):
    list_display = ["source", "into", "merged_at", "account"]
    search_fields = ["source", "into", "account__slug"]


class SetAsideFilter(admin.SimpleListFilter):
    title = "set aside"
    parameter_name = "set_aside"

    def lookups(self, request, model_admin):
        return [("yes", "Set aside (evaluation failed)"), ("no", "Waiting")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(attempts__gt=0)
        if self.value() == "no":
            return queryset.filter(attempts=0)
        return queryset


@admin.register(Reevaluation)
class ReevaluationAdmin(ReadOnlyAdmin):
    """The re-evaluation queue; a subject whose evaluation failed stays here, set aside, with
    its error, until it evaluates (its previous charges stand meanwhile)."""

    list_display = [
        "subject",
        "kind",
        "account",
        "marked_at",
        "claimed_at",
        "attempts",
        "next_attempt_at",
        "error",
    ]
    list_filter = [SetAsideFilter, "kind"]
    search_fields = ["subject", "account__slug"]
    actions = ["retry_now"]

    @admin.display(description="last error")
    def error(self, obj: Reevaluation) -> str:
        return obj.last_error[:120]

    @admin.action(description="Retry the selected subjects now")
    def retry_now(self, request, queryset):
        # Once the cause is fixed (a deploy), rather than wait out the backoff.
        count = queryset.filter(attempts__gt=0).update(next_attempt_at=timezone.now())
        self.message_user(request, f"{count} subject(s) will be evaluated by the next pass.")


@admin.register(Entitlement)
class EntitlementAdmin(ReadOnlyAdmin):
    """Read-only: a state typed in here would skip the limits and the audit log. A pause can
    be lifted with the action, which records who did it."""

    list_display = ["account", "feature", "state", "until", "reason", "updated_at"]
    list_filter = ["feature", "state"]
    list_select_related = ["account"]
    search_fields = ["account__slug"]
    actions = ["lift_pause"]

    @admin.action(description="Lift the pause of the selected entitlements")
    def lift_pause(self, request, queryset):
        lifted = 0
        with acting_as(source=Source.OPERATOR, user=request.user), transaction.atomic():
            for row in queryset.select_for_update().filter(state=Entitlement.State.PAUSED):
                audit_record(
                    action="entitlement.state",
                    obj=row,
                    label=row.feature,
                    before=row.state,
                    after="active",
                    reason="pause lifted in the admin",
                )
                lifted += Entitlement.objects.filter(pk=row.pk).update(
                    state=Entitlement.State.ACTIVE, until=None, reason=""
                )
        self.message_user(request, f"{lifted} pause(s) lifted.")

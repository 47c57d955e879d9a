from django.contrib import admin

from .models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """Append-only (the database refuses UPDATE and DELETE): shown, never edited."""

    list_display = ["at", "source", "actor", "action", "object_type", "object_label", "reason"]
    list_filter = ["source", "action", "object_type"]
    search_fields = ["object_label", "actor", "reason"]
    date_hierarchy = "at"
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

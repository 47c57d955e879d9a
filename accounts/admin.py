from django.contrib import admin, messages

from audit.models import Source
from audit.services import acting_as

from . import services
from .models import Account, ApiKey, IdempotencyRecord, Integration, Membership, Partner, Store


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


class StoreInline(admin.TabularInline):
    model = Store
    extra = 0


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "partner", "currency", "status", "billing_email", "created_at"]
    list_filter = ["status", "currency", "partner"]
    search_fields = ["slug", "name", "billing_email", "company", "vat_id"]
    readonly_fields = ["stripe_customer_id", "created_at"]
    inlines = [MembershipInline, StoreInline]

    def get_readonly_fields(self, request, obj=None):
        # Money is kept in the account's currency: it cannot change once the account exists.
        return [*self.readonly_fields, "currency"] if obj else self.readonly_fields


@admin.register(Partner)
class PartnerAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]
    search_fields = ["name"]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "account", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__username", "user__email", "account__slug"]
    autocomplete_fields = ["user", "account"]


@admin.register(Store)
class StoreAdmin(admin.ModelAdmin):
    list_display = ["name", "platform", "account", "created_at"]
    list_filter = ["platform"]
    search_fields = ["name", "domain", "account__slug"]


@admin.register(Integration)
class IntegrationAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "account", "store", "is_active"]
    list_filter = ["kind", "is_active"]
    search_fields = ["name", "account__slug"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are created with `manage.py create_api_key` (the raw key is printed once there)."""

    list_display = [
        "prefix",
        "name",
        "partner",
        "account",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["partner"]
    search_fields = ["prefix", "name", "account__slug", "partner__name"]
    readonly_fields = ["prefix", "partner", "account", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset):
        with acting_as(source=Source.OPERATOR, user=request.user):  # names them in audit
            for key in queryset:
                services.api_key_revoke(key=key)
        self.message_user(request, f"{queryset.count()} key(s) revoked.", messages.SUCCESS)


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(admin.ModelAdmin):
    list_display = ["scope", "key", "status_code", "created_at"]
    search_fields = ["key", "scope"]
    readonly_fields = ["scope", "key", "request_hash", "status_code", "response_body", "created_at"]

    def has_add_permission(self, request):
        return False

from django import forms
from django.contrib import admin, messages
from django.utils import timezone

from audit.models import Source
from audit.services import acting_as

from . import services
from .models import (
    Account,
    ApiKey,
    IdempotencyRecord,
    Integration,
    Membership,
    Partner,
    ShopifyShop,
    Store,
)
from .validators import shop_domain_valid


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


class StoreInline(admin.TabularInline):
    model = Store
    extra = 0


class ShopifyShopForm(forms.ModelForm):
    """The shop of a Shopify-channel account. The access token is write-only: the field is
    always empty on the page (never rendered back); left empty on a change, the stored token
    stays."""

    access_token = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="The app's Admin API access token for this shop. Write-only: never shown "
        "again; leave empty to keep the stored one.",
    )

    class Meta:
        model = ShopifyShop
        fields = ["shop_domain", "capped_amount_minor", "installed_at", "uninstalled_at"]

    def clean_shop_domain(self) -> str:
        return shop_domain_valid(self.cleaned_data["shop_domain"])

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("access_token") and not self.instance.access_token_encrypted:
            self.add_error("access_token", "A new shop needs the app's access token.")
        return cleaned

    def save(self, commit: bool = True):
        shop = super().save(commit=False)
        if self.cleaned_data.get("access_token"):
            shop.set_access_token(self.cleaned_data["access_token"])
        if commit:
            shop.save()
        return shop


class ShopifyShopInline(admin.StackedInline):
    model = ShopifyShop
    form = ShopifyShopForm
    extra = 0
    max_num = 1
    can_delete = False

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        formset.form.base_fields["installed_at"].initial = timezone.now
        return formset


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = [
        "slug",
        "name",
        "partner",
        "currency",
        "billing_channel",
        "status",
        "billing_email",
        "created_at",
    ]
    list_filter = ["status", "currency", "billing_channel", "partner"]
    search_fields = ["slug", "name", "billing_email", "company", "vat_id"]
    readonly_fields = ["stripe_customer_id", "created_at"]
    inlines = [MembershipInline, StoreInline, ShopifyShopInline]

    def get_readonly_fields(self, request, obj=None):
        # Money is kept in the account's currency: it cannot change once the account exists.
        # The channel neither: an operator moves an account with `billing_channel_change`,
        # which refuses while an invoice is unpaid (docs/shopify.md, "Changing channel").
        if obj:
            return [*self.readonly_fields, "currency", "billing_channel"]
        return self.readonly_fields


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

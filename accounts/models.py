"""Tenants and who may act for them: accounts, partners, members, stores, integrations, API keys."""

from django.conf import settings
from django.core.validators import MinLengthValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower

from .validators import country_code, plain_text

# ISO 4217 codes the portal bills in. An account's currency is fixed at creation (money is kept
# in this currency's minor units everywhere), so an unknown code is refused by the database too.
CURRENCIES = ("USD", "EUR", "GBP", "CAD", "AUD")
CURRENCY_CHOICES = [(code, code) for code in CURRENCIES]


class Partner(models.Model):
    """A reseller or platform that provisions merchant accounts through the API."""

    name = models.CharField(max_length=120, unique=True, validators=[plain_text])
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class AccountStatus(models.TextChoices):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CLOSED = "closed"


class BillingChannel(models.TextChoices):
    """How an account pays: by card through Stripe, or through its Shopify store (an app
    subscription whose usage records Shopify invoices). Chosen at creation; only an operator
    moves an account to the other channel (docs/shopify.md, "Changing channel")."""

    STRIPE = "stripe", "Card through Stripe"
    SHOPIFY = "shopify", "Paid through Shopify"


class TaxIdStatus(models.TextChoices):
    """What we know of an account's VAT id (plans.tax.VatIdStatus has the same values)."""

    PENDING = "pending", "Waiting for VIES"
    VALID = "valid", "Valid (VIES)"
    INVALID = "invalid", "Invalid (VIES)"
    UNAVAILABLE = "unavailable", "VIES could not answer"
    UNCHECKED = "unchecked", "Not checked"


class Account(models.Model):
    """One merchant: the tenant every other row belongs to."""

    Status = AccountStatus
    Channel = BillingChannel

    slug = models.SlugField(max_length=63, unique=True, help_text="Kept in lower case.")
    name = models.CharField(max_length=200, validators=[plain_text])
    partner = models.ForeignKey(
        Partner, null=True, blank=True, on_delete=models.PROTECT, related_name="accounts"
    )
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES, default="USD")
    billing_email = models.EmailField()
    company = models.CharField(max_length=200, blank=True, validators=[plain_text])
    address_line1 = models.CharField(max_length=200, blank=True, validators=[plain_text])
    address_line2 = models.CharField(max_length=200, blank=True, validators=[plain_text])
    postal_code = models.CharField(max_length=20, blank=True, validators=[plain_text])
    city = models.CharField(max_length=100, blank=True, validators=[plain_text])
    country = models.CharField(
        max_length=2, blank=True, help_text="ISO 3166-1 alpha-2", validators=[country_code]
    )
    vat_id = models.CharField("VAT id", max_length=20, blank=True, validators=[plain_text])
    # The buyer's tax identity (issue 25, docs/tax.md): the US state for sales tax, and what
    # VIES last said of the VAT id. A VIES outage keeps the last good answer (the status, the
    # consultation number, the date of that answer); `checked_at` is the date of the answer
    # in use, so a re-check is due 30 days after it.
    us_state = models.CharField(
        "US state", max_length=2, blank=True, help_text="Two-letter code, e.g. WA (US only)."
    )
    tax_id_status = models.CharField(
        "VAT id status", max_length=12, choices=TaxIdStatus.choices, default=TaxIdStatus.UNCHECKED
    )
    tax_id_checked_at = models.DateTimeField("VAT id checked at", null=True, blank=True)
    tax_id_consultation = models.CharField("VIES consultation number", max_length=64, blank=True)
    tax_id_name = models.CharField("Name VIES returned", max_length=200, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ACTIVE)
    stripe_customer_id = models.CharField(max_length=64, blank=True)
    billing_channel = models.CharField(
        max_length=8, choices=BillingChannel.choices, default=BillingChannel.STRIPE
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(currency__in=CURRENCIES), name="account_currency_known"
            ),
            models.CheckConstraint(
                condition=Q(billing_channel__in=BillingChannel.values),
                name="account_billing_channel_valid",
            ),
            models.CheckConstraint(
                condition=Q(status__in=AccountStatus.values), name="account_status_valid"
            ),
            # With the slug's unique index, slugs are unique whatever their case ('A1' and
            # 'a1' would be two accounts in one namespace of page addresses); lookups lower
            # the slug they are given and still use that index.
            models.CheckConstraint(
                condition=Q(slug=Lower("slug")),
                name="account_slug_lower_case",
                violation_error_message="Slugs are kept in lower case.",
            ),
        ]

    def clean(self) -> None:
        # The admin's form reaches here before the constraint is checked.
        self.slug = self.slug.lower()

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"

    @property
    def pays_through_shopify(self) -> bool:
        return self.billing_channel == BillingChannel.SHOPIFY


class ShopifyShop(models.Model):
    """The Shopify store an account pays through: the shop's domain and the app's access token
    for it (the partner that installed the app hands both over). The token is stored encrypted
    (accounts.secrets) and never shown, logged or returned by the API."""

    account = models.OneToOneField(Account, on_delete=models.CASCADE, related_name="shopify_shop")
    shop_domain = models.CharField(
        max_length=253, unique=True, help_text="The shop's permanent domain: name.myshopify.com"
    )
    access_token_encrypted = models.TextField(editable=False)
    capped_amount_minor = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="This account's approved usage cap per 30 days (minor units); empty: the plan's.",
    )
    installed_at = models.DateTimeField()
    uninstalled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(shop_domain=Lower("shop_domain")),
                name="shopify_shop_domain_lower_case",
            ),
            models.CheckConstraint(
                condition=Q(capped_amount_minor__isnull=True) | Q(capped_amount_minor__gt=0),
                name="shopify_shop_cap_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.shop_domain

    def __repr__(self) -> str:  # never the token, even encrypted
        return f"<ShopifyShop {self.shop_domain}>"

    @property
    def access_token(self) -> str:
        from .secrets import decrypt

        return decrypt(self.access_token_encrypted)

    def set_access_token(self, token: str) -> None:
        from .secrets import encrypt

        self.access_token_encrypted = encrypt(token)


class Role(models.TextChoices):
    OWNER = "owner"
    ADMIN = "admin"
    AGENT = "agent"
    LIGHT_AGENT = "light_agent", "light agent"


# The one "may manage billing" rule: owners and admins change plans, cards and details and are
# told about billing; agents only look. Every page, email and query asks here.
BILLING_MANAGER_ROLES = (Role.OWNER, Role.ADMIN)


def may_manage_billing(role: str | None) -> bool:
    """Whether a member with this role manages the account's billing (None: not a member)."""
    return role in BILLING_MANAGER_ROLES


class Membership(models.Model):
    """A user's seat in an account. Owners and admins manage billing; agents only work tickets."""

    Role = Role

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=12, choices=Role.choices, default=Role.AGENT)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "account"], name="membership_once"),
            models.CheckConstraint(condition=Q(role__in=Role.values), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.account.slug} ({self.role})"


class Platform(models.TextChoices):
    SHOPIFY = "shopify"
    MAGENTO = "magento"
    BIGCOMMERCE = "bigcommerce"
    OTHER = "other"


class Store(models.Model):
    """An e-commerce store connected to the helpdesk; each one is itself an integration (P5)."""

    Platform = Platform

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="stores")
    platform = models.CharField(max_length=12, choices=Platform.choices)
    name = models.CharField(max_length=200, validators=[plain_text])
    domain = models.CharField(max_length=253, blank=True, validators=[plain_text])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "name"], name="store_name_unique"),
            models.CheckConstraint(
                condition=Q(platform__in=Platform.values), name="store_platform_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.platform})"


class IntegrationKind(models.TextChoices):
    STORE = "store"
    EMAIL = "email"
    CHAT = "chat"
    SOCIAL = "social"
    SMS = "sms"
    PHONE = "phone"
    OTHER = "other"


class Integration(models.Model):
    """A connected tool: the store connection itself, or a channel (email, chat, social, ...)."""

    Kind = IntegrationKind

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="integrations")
    store = models.ForeignKey(
        Store, null=True, blank=True, on_delete=models.CASCADE, related_name="integrations"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    name = models.CharField(max_length=200, validators=[plain_text])
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=IntegrationKind.values), name="integration_kind_valid"
            ),
            # A store has exactly one "store" integration: the connection to the store itself.
            models.UniqueConstraint(
                fields=["store"], condition=Q(kind="store"), name="integration_one_per_store"
            ),
            models.CheckConstraint(
                condition=~Q(kind="store") | Q(store__isnull=False),
                name="integration_store_kind_has_store",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class ApiKeyScope(models.TextChoices):
    """What a key may do. `read`: every GET. `write`: every other method (events included).
    `events:write`: only `POST /api/v1/events`, for the helpdesk's stream (an ingest-only key
    that cannot read bills nor change a plan if it leaks from the helpdesk's servers).
    `refunds:write`: credit notes that send money back to the card; never a default, since a
    refund moves money out of the balance: a key holds it only when its partner asked."""

    READ = "read"
    WRITE = "write"
    EVENTS_WRITE = "events:write"
    REFUNDS_WRITE = "refunds:write"


def default_scopes() -> list[str]:
    return [ApiKeyScope.READ.value, ApiKeyScope.WRITE.value]


class ApiKey(models.Model):
    """A bearer key for the partner API, stored only as a hash; the raw key is shown once.

    A partner key (account empty) reaches every account the partner owns; an account key
    reaches only its account. A key stops working when revoked or when `expires_at` passes
    (rotation sets it on the old key so both work for a while).
    """

    Scope = ApiKeyScope

    partner = models.ForeignKey(
        Partner, null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys"
    )
    account = models.ForeignKey(
        Account, null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=120, blank=True, validators=[plain_text])
    prefix = models.CharField(max_length=16, unique=True, validators=[MinLengthValidator(8)])
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    scopes = models.JSONField(default=default_scopes)
    expires_at = models.DateTimeField(null=True, blank=True)
    rotated_from = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="rotated_to"
    )

    class Meta:
        verbose_name = "API key"
        constraints = [
            models.CheckConstraint(
                condition=Q(partner__isnull=False) | Q(account__isnull=False),
                name="apikey_has_scope",
            ),
        ]

    def is_active_at(self, at) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > at)

    def allows(self, scope: str) -> bool:
        return scope in self.scopes

    def __str__(self) -> str:
        scope = self.account.slug if self.account else f"partner {self.partner}"
        return f"{self.prefix}… ({scope})"


class IdempotencyRecord(models.Model):
    """The first response to a POST sent with an `Idempotency-Key`, replayed for the same key.

    The row is claimed before the request runs, so two concurrent requests with one key cannot
    both create something: the second sees the claim and gets a 409.
    """

    scope = models.CharField(max_length=80, help_text="Who sent it: one API key or one user.")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "key"], name="idempotency_key_once"),
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.key}"


# --- evidence of who used the account and what they agreed to (issue 26, card disputes) -----


class LoginRecord(models.Model):
    """One successful login (Django's `user_logged_in`): the history a card dispute's evidence
    pack shows for the account's members. Failures are axes' (`AccessAttempt`). Kept 400 days
    (accounts.services.login_records_prune, daily), longer than a card network's dispute window."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="login_records"
    )
    at = models.DateTimeField()
    ip_address = models.GenericIPAddressField("IP address", null=True, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["user", "at"], name="login_record_user_at"),
            models.Index(fields=["at"], name="login_record_at"),  # the prune's range
        ]

    def __str__(self) -> str:
        return f"{self.user} at {self.at:%Y-%m-%d %H:%M} from {self.ip_address or 'unknown'}"


class TermsSource(models.TextChoices):
    """Where the acceptance was given: a member ticking the box on the Payment method page, or
    a partner's key asserting (PUT payment-method) that its merchant accepted."""

    MERCHANT_PAGE = "merchant_page", "Payment method page"
    PARTNER_API = "partner_api", "Partner API"


class TermsAcceptance(models.Model):
    """An account's acceptance of the Terms of Service, given with the card it authorises us to
    charge: the version, the exact words shown, who (a member, or a partner's key), from where.
    Never changed once written; the evidence a card dispute's pack carries."""

    Source = TermsSource

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="terms_acceptances")
    source = models.CharField(max_length=16, choices=TermsSource.choices)
    # The member who ticked the box; kept as a name too, so a deleted user leaves who it was.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="terms_acceptances",
    )
    accepted_by = models.CharField(max_length=160, help_text="The member, or the key's label.")
    version = models.CharField(max_length=40)
    text = models.TextField(help_text="The words shown next to the box, exactly.")
    card = models.CharField(max_length=120, blank=True, help_text="The card it authorises.")
    accepted_at = models.DateTimeField()
    ip_address = models.GenericIPAddressField("IP address", null=True, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)

    class Meta:
        indexes = [models.Index(fields=["account", "accepted_at"], name="terms_account_at")]
        constraints = [
            models.CheckConstraint(
                condition=Q(source__in=TermsSource.values), name="terms_source_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account.slug}: terms {self.version} by {self.accepted_by}"

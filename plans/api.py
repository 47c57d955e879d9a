"""Partner API: accounts with their subscription, and the catalog."""

from django.core.validators import RegexValidator
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import input_rules
from accounts.api_fields import (
    AwareDateTimeField,
    CountryField,
    LowerSlugField,
    NewestFirstPagination,
    ShopDomainField,
    StrictCharField,
    TextField,
    WholeNumberField,
    money,
)
from accounts.api_schema import PeriodOut, paginated
from accounts.errors import DomainError, Forbidden
from accounts.idempotency import idempotent
from accounts.models import CURRENCIES, Account, ShopifyShop
from accounts.principals import KeyPrincipal
from accounts.selectors import account_get, account_integration_count, account_list

from . import pricing, selectors, services
from .models import Interval, Subscription

# What a partner may ask for: a card account is sold by the month or the year, and a Shopify
# account's cycle is set to every 30 days for it (its `month`), so `30d` is never an input;
# outputs keep every Interval (a Shopify subscription shows `30d`).
INTERVALS_IN = [Interval.MONTH.value, Interval.YEAR.value]


class AddOnChoiceIn(serializers.Serializer):
    addon = serializers.CharField(max_length=40)
    tier = serializers.CharField(max_length=40)


class ShopifyShopIn(serializers.Serializer):
    shop_domain = ShopDomainField()
    access_token = StrictCharField(
        max_length=500,
        write_only=True,
        # Printable ASCII, as Shopify's tokens are; taken as given (the schema's pattern).
        trim_whitespace=False,
        validators=[RegexValidator(r"^[!-~]+\Z", "Give the token as Shopify shows it.")],
        help_text="The app's Admin API access token for the shop. Stored encrypted; never "
        "returned.",
    )


class AccountCreateIn(serializers.Serializer):
    slug = LowerSlugField(max_length=63)
    name = TextField(max_length=200)
    billing_email = serializers.EmailField()
    currency = serializers.ChoiceField(choices=CURRENCIES, default="USD")
    plan = serializers.CharField(max_length=40)
    interval = serializers.ChoiceField(choices=INTERVALS_IN, default=Interval.MONTH)
    addons = AddOnChoiceIn(many=True, required=False, default=list)
    period_start = AwareDateTimeField(
        required=False,
        window=input_rules.NOT_FUTURE,
        help_text="Migrating a customer mid-cycle: the cycle's anchor, RFC 3339 with an offset, "
        f"{input_rules.NOT_FUTURE.describe()}.",
    )
    # At most what the database's integer column holds (above, a 400 from the model's check).
    full_agents = WholeNumberField(min_value=0, max_value=2**31 - 1, default=0)
    light_agents = WholeNumberField(min_value=0, max_value=2**31 - 1, default=0)
    company = TextField(max_length=200, required=False, default="")
    vat_id = TextField(max_length=20, required=False, default="")
    country = CountryField(required=False, default="")
    billing_channel = serializers.ChoiceField(
        choices=Account.Channel.choices,
        default=Account.Channel.STRIPE,
        help_text="How the account pays: `stripe` (card) or `shopify` (its Shopify store's app "
        "subscription; then `shopify` is required, the interval is every 30 days and the "
        "subscription starts once the merchant approves it at Shopify).",
    )
    shopify = ShopifyShopIn(required=False, help_text="The shop, for `billing_channel: shopify`.")

    def validate(self, data):
        shopify = data.get("billing_channel") == Account.Channel.SHOPIFY
        if shopify and not data.get("shopify"):
            raise serializers.ValidationError(
                {"shopify": ["The shop (shop_domain and access_token) is required for Shopify."]}
            )
        if not shopify and data.get("shopify"):
            raise serializers.ValidationError(
                {"shopify": ["A shop is given only with billing_channel 'shopify'."]}
            )
        return data

    # The catalog is checked here, not only in the service, so an unknown plan or add-on is
    # listed with every other field error of the request at once.
    def validate_plan(self, value: str):
        try:
            return services.resolve_offer(code=value)
        except DomainError as exc:
            raise serializers.ValidationError(exc.message, code=exc.code) from None

    def validate_addons(self, value: list[dict]):
        try:
            return services.resolve_tiers(choices=[services.AddOnChoice(**a) for a in value])
        except DomainError as exc:
            raise serializers.ValidationError(exc.message, code=exc.code) from None


class ScheduledChangeOut(serializers.Serializer):
    id = serializers.IntegerField()
    change = serializers.CharField(help_text="In words, e.g. 'plan → basic'.")
    effective_at = serializers.DateTimeField()


class SubscriptionOut(serializers.Serializer):
    plan = serializers.CharField()
    interval = serializers.ChoiceField(choices=Interval.values)
    billing_channel = serializers.ChoiceField(
        choices=Account.Channel.choices,
        help_text="How it is paid: `stripe` (card) or `shopify` (every 30 days through the "
        "shop's app subscription; the account's `shopify` has Shopify's figures).",
    )
    status = serializers.ChoiceField(choices=Subscription.Status.choices)
    state = serializers.ChoiceField(
        choices=["renews", "ends", "ended"],
        help_text="What happens at the cycle's end: `renews`; `ends` (a cancellation is "
        "scheduled: no further cycle, `ends_at` says when); `ended` (it has, at `ended_at`).",
    )
    started_at = serializers.DateTimeField()
    renews_at = serializers.DateTimeField(
        allow_null=True, help_text="The next cycle's start while it renews; null otherwise."
    )
    ends_at = serializers.DateTimeField(
        allow_null=True,
        help_text="When service stops (exclusive: the last day of service is the day before), "
        "once a cancellation is scheduled or took effect; null while it renews.",
    )
    ended_at = serializers.DateTimeField(allow_null=True, help_text="Null until it ended.")
    current_period = PeriodOut()
    addons = AddOnChoiceIn(many=True)
    full_agents = serializers.IntegerField()
    light_agents = serializers.IntegerField()
    scheduled_changes = ScheduledChangeOut(many=True)


class ShopifyShopOut(serializers.Serializer):
    """The shop a Shopify-channel account pays through (never its token). billing.api adds
    what Shopify says of its app subscription."""

    shop_domain = serializers.CharField()


class AccountOut(serializers.Serializer):
    slug = serializers.SlugField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=Account.Status.choices)
    currency = serializers.ChoiceField(choices=CURRENCIES)
    billing_email = serializers.EmailField()
    company = serializers.CharField(allow_blank=True)
    vat_id = serializers.CharField(allow_blank=True)
    country = serializers.CharField(allow_blank=True)
    partner = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    billing_channel = serializers.ChoiceField(choices=Account.Channel.choices)
    shopify = ShopifyShopOut(allow_null=True, help_text="Null on the card channel.")
    subscription = SubscriptionOut(allow_null=True, help_text="The live subscription, if any.")
    last_subscription = SubscriptionOut(
        allow_null=True,
        help_text="When no subscription is live: the last one, which ended (`state: ended`), "
        "with its dates; null while one is live or none ever was.",
    )
    integrations_count = serializers.IntegerField(help_text="P5: every active integration.")
    integrations_included = serializers.IntegerField(allow_null=True)
    integrations_within_plan = serializers.BooleanField(allow_null=True)


ACCOUNT_EXAMPLE = OpenApiExample(
    "Pro, yearly, with Voice (P1)",
    request_only=True,
    value={
        "slug": "bloom",
        "name": "Bloom & Co",
        "billing_email": "billing@bloom.example",
        "currency": "USD",
        "plan": "pro",
        "interval": "year",
        "addons": [{"addon": "voice", "tier": "voice-75"}],
    },
)


class AllowanceOut(serializers.Serializer):
    meter = serializers.CharField()
    included_per_month = serializers.IntegerField()
    overage = serializers.CharField()
    block_size = serializers.IntegerField(allow_null=True)


class _PricedOut(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    rank = serializers.IntegerField()
    prices = serializers.DictField(
        help_text="Per component (fee, ...) and interval: a list of money objects."
    )


class PlanOut(_PricedOut):
    custom_pricing = serializers.BooleanField()
    included_integrations = serializers.IntegerField(allow_null=True)
    allowances = AllowanceOut(many=True)


class EditionOut(_PricedOut):
    automated_resolutions_per_full_agent_month = serializers.IntegerField(allow_null=True)
    yearly_resolution_cap = serializers.IntegerField(allow_null=True)
    min_commitment_units = serializers.IntegerField(allow_null=True)


class TierOut(_PricedOut):
    allowances = AllowanceOut(many=True)


class AddOnOut(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    meter = serializers.CharField()
    tiers = TierOut(many=True)


class CatalogOut(serializers.Serializer):
    plans = PlanOut(many=True)
    editions = EditionOut(many=True)
    addons = AddOnOut(many=True)


def subscription_out(subscription: Subscription | None) -> dict | None:
    if subscription is None:
        return None
    course = selectors.subscription_course(subscription)
    return {
        "plan": subscription.offer.code,
        "interval": subscription.interval,
        "billing_channel": subscription.account.billing_channel,
        "status": subscription.status,
        "state": course.state,
        "started_at": subscription.started_at,
        "renews_at": course.at if course.state == "renews" else None,
        "ends_at": course.at if course.state != "renews" else None,
        "ended_at": subscription.ended_at,
        "current_period": {
            "start": subscription.current_period_start,
            "end": subscription.current_period_end,
        },
        "addons": [{"addon": a.addon.code, "tier": a.tier.code} for a in subscription.addons.all()],
        "full_agents": subscription.full_agents,
        "light_agents": subscription.light_agents,
        "scheduled_changes": [
            {"id": c.pk, "change": str(c), "effective_at": c.effective_at}
            for c in subscription.scheduled_changes.all()
            if c.status == c.Status.SCHEDULED
        ],
    }


def shopify_out(account: Account) -> dict | None:
    """The shop of a Shopify-channel account, as the API shows it (never the token)."""
    if not account.pays_through_shopify:
        return None
    shop = ShopifyShop.objects.filter(account=account).first()
    return {"shop_domain": shop.shop_domain if shop else ""}


def account_out(account: Account) -> dict:
    subscription = selectors.subscription_current(account=account)
    integrations = account_integration_count(account=account)
    plan = subscription.plan if subscription else None
    included = plan.included_integrations if plan else None
    return {
        "slug": account.slug,
        "name": account.name,
        "status": account.status,
        "currency": account.currency,
        "billing_email": account.billing_email,
        "company": account.company,
        "vat_id": account.vat_id,
        "country": account.country,
        "partner": account.partner.name if account.partner else None,
        "created_at": account.created_at,
        "billing_channel": account.billing_channel,
        "shopify": shopify_out(account),
        "subscription": subscription_out(subscription),
        "last_subscription": None
        if subscription
        else subscription_out(selectors.subscription_last_ended(account=account)),
        "integrations_count": integrations,
        "integrations_included": included,
        "integrations_within_plan": pricing.integrations_within_plan(
            count=integrations, included=included
        ),
    }


class AccountsOutMixin:
    def accounts_out(self, accounts: list[Account]) -> list[dict]:
        """The accounts as the API shows them. billing.api's views add the statement of
        account (credit balance, amount owed), which this layer cannot read."""
        return [account_out(account) for account in accounts]


class AccountsApi(AccountsOutMixin, APIView):
    """GET: the accounts this key reaches, newest first. POST: a new account and subscription."""

    @extend_schema(operation_id="accounts_list", responses=paginated(AccountOut(), "AccountPage"))
    def get(self, request):
        paginator = NewestFirstPagination()
        page = paginator.paginate_queryset(account_list(principal=request.user), request, view=self)
        return paginator.get_paginated_response(self.accounts_out(list(page)))

    @extend_schema(
        operation_id="accounts_create",
        request=AccountCreateIn,
        responses={201: AccountOut},
        examples=[ACCOUNT_EXAMPLE],
    )
    @idempotent
    def post(self, request):
        principal = request.user
        if isinstance(principal, KeyPrincipal) and not principal.can_create_accounts:
            raise Forbidden("Only a partner key can create accounts.")
        data = _valid(AccountCreateIn, request.data)
        partner = principal.key.partner if isinstance(principal, KeyPrincipal) else None
        account = self.account_open(partner=partner, data=data)
        return Response(self.accounts_out([account])[0], status=status.HTTP_201_CREATED)

    def account_open(self, *, partner, data: dict) -> Account:
        """Open the account from the validated input (billing.api's view also asks Shopify
        for the subscription's approval on that channel)."""
        shop = data.pop("shopify", None) or {}
        return services.account_open(
            partner=partner,
            plan_code=data.pop("plan").code,
            addons=[services.AddOnChoice(t.addon.code, t.code) for t in data.pop("addons")],
            shop_domain=shop.get("shop_domain", ""),
            access_token=shop.get("access_token", ""),
            **data,
        )


class AccountDetailApi(AccountsOutMixin, APIView):
    @extend_schema(operation_id="accounts_retrieve", responses=AccountOut)
    def get(self, request, slug: str):
        return Response(self.accounts_out([account_get(principal=request.user, slug=slug)])[0])


class PlansApi(APIView):
    """The public catalog: plans, editions and add-ons with prices per interval and currency."""

    @extend_schema(operation_id="plans_list", responses=CatalogOut)
    def get(self, request):
        return Response(
            {
                "plans": [_plan_out(p) for p in selectors.catalog_plans()],
                "editions": [_edition_out(e) for e in selectors.catalog_editions()],
                "addons": [_addon_out(a) for a in selectors.catalog_addons()],
            }
        )


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _prices_out(offer) -> dict:
    out: dict = {}
    for price in offer.price_set.all():
        key = "fee" if price.component == "fee" else price.component
        out.setdefault(key, {}).setdefault(price.interval, []).append(
            money(price.unit_amount_minor, price.currency)
        )
    return out


def _allowances_out(offer) -> list[dict]:
    return [
        {
            "meter": a.meter,
            "included_per_month": a.included,
            "overage": a.overage_mode,
            "block_size": a.block_size,
        }
        for a in offer.allowance_set.all()
    ]


def _plan_out(plan) -> dict:
    return {
        "code": plan.code,
        "name": plan.name,
        "rank": plan.rank,
        "custom_pricing": plan.is_custom,
        "included_integrations": plan.included_integrations,
        "allowances": _allowances_out(plan),
        "prices": _prices_out(plan),
    }


def _edition_out(edition) -> dict:
    return {
        "code": edition.code,
        "name": edition.name,
        "rank": edition.rank,
        "automated_resolutions_per_full_agent_month": edition.resolutions_per_agent_month,
        "yearly_resolution_cap": edition.yearly_resolution_cap,
        "min_commitment_units": edition.min_commitment_units,
        "prices": _prices_out(edition),
    }


def _addon_out(addon) -> dict:
    return {
        "code": addon.code,
        "name": addon.name,
        "meter": addon.meter,
        "tiers": [
            {
                "code": t.code,
                "name": t.name,
                "rank": t.rank,
                "allowances": _allowances_out(t),
                "prices": _prices_out(t),
            }
            for t in addon.tiers.all()
        ],
    }

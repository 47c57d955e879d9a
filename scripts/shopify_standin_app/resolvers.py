"""Resolvers: GraphQL arguments in, the store's operations, Shopify-shaped objects out.
Objects are dicts carrying `__typename` (graphql-core's default type resolver reads it for the
Node interface and the AppPricingDetails union); list fields with arguments are callables."""

from graphql import GraphQLResolveInfo, GraphQLSchema

from .state import (
    LineItem,
    Refused,
    Shop,
    Store,
    Subscription,
    UsageRecord,
    shopify_time,
)


def money(amount, currency: str) -> dict:
    return {"amount": amount, "currencyCode": currency}


def line_view(store: Store, sub: Subscription, line: LineItem) -> dict:
    if line.is_usage:
        details = {
            "__typename": "AppUsagePricing",
            "balanceUsed": money(store.balance_used(sub, line), sub.currency),
            "cappedAmount": money(line.capped_amount, sub.currency),
            "interval": line.interval,
            "terms": line.terms,
        }
    else:
        details = {
            "__typename": "AppRecurringPricing",
            "price": money(line.recurring_price, sub.currency),
            "interval": line.interval,
        }

    def usage_records(_info: GraphQLResolveInfo, first: int | None = None) -> dict:
        # Newest first, as Shopify lists them.
        records = sorted(store.records_of(line), key=lambda r: r.number, reverse=True)
        return {"edges": [{"node": record_view(store, r)} for r in records[:first]]}

    return {
        "__typename": "AppSubscriptionLineItem",
        "id": line.gid,
        "plan": {"pricingDetails": details},
        "usageRecords": usage_records,
    }


def subscription_view(store: Store, sub: Subscription) -> dict:
    return {
        "__typename": "AppSubscription",
        "id": sub.gid,
        "name": sub.name,
        "status": sub.status,
        "createdAt": shopify_time(sub.created_at),
        "currentPeriodEnd": shopify_time(sub.current_period_end),
        "test": sub.test,
        "returnUrl": sub.return_url,
        "lineItems": [line_view(store, sub, line) for line in sub.lines],
    }


def record_view(store: Store, record: UsageRecord) -> dict:
    sub = store.subscriptions[record.subscription_number]
    return {
        "__typename": "AppUsageRecord",
        "id": record.gid,
        "createdAt": shopify_time(record.created_at),
        "description": record.description,
        "idempotencyKey": record.idempotency_key,
        "price": money(record.price, record.currency),
        "subscriptionLineItem": lambda _info: line_view(store, sub, sub.lines[record.line_index]),
    }


def user_errors(refused: Refused) -> list[dict]:
    return [{"field": refused.field_path, "message": refused.message}]


def context(info: GraphQLResolveInfo) -> tuple[Store, Shop]:
    return info.context["store"], info.context["shop"]


# --- Query -------------------------------------------------------------------------------------
def resolve_installation(_root, info: GraphQLResolveInfo) -> dict:
    store, shop = context(info)
    mine = sorted(
        (s for s in store.subscriptions.values() if s.shop == shop.domain),
        key=lambda s: s.number,
        reverse=True,
    )

    def all_subscriptions(_info: GraphQLResolveInfo, first: int | None = None) -> dict:
        return {"edges": [{"node": subscription_view(store, s)} for s in mine[:first]]}

    return {
        "id": f"gid://shopify/AppInstallation/{shop.number}",
        "activeSubscriptions": [subscription_view(store, s) for s in mine if s.status == "ACTIVE"],
        "allSubscriptions": all_subscriptions,
    }


def resolve_node(_root, info: GraphQLResolveInfo, id: str) -> dict | None:  # noqa: A002
    store, shop = context(info)
    if sub := store.subscription_of(shop, id):
        return subscription_view(store, sub)
    if found := store.line_of(shop, id):
        return line_view(store, *found)
    if record := store.record_of(shop, id):
        return record_view(store, record)
    return None


def resolve_billing_preferences(_root, info: GraphQLResolveInfo) -> dict:
    return {"currency": context(info)[1].currency}


# --- Mutation ----------------------------------------------------------------------------------
def resolve_subscription_create(
    _root,
    info: GraphQLResolveInfo,
    name: str,
    lineItems: list[dict],  # noqa: N803 - Shopify's argument names
    returnUrl: str,  # noqa: N803
    test: bool | None = None,
    trialDays: int | None = None,  # noqa: N803
    replacementBehavior: str | None = None,  # noqa: N803
) -> dict:
    store, shop = context(info)
    try:
        sub = store.subscription_create(
            shop=shop,
            name=name,
            line_inputs=lineItems,
            return_url=returnUrl,
            test=bool(test),
            trial_days=trialDays or 0,
            replacement_behavior=replacementBehavior or "STANDARD",
        )
    except Refused as refused:
        return {
            "appSubscription": None,
            "confirmationUrl": None,
            "userErrors": user_errors(refused),
        }
    return {
        "appSubscription": subscription_view(store, sub),
        "confirmationUrl": store.confirmation_url(sub),
        "userErrors": [],
    }


def resolve_subscription_cancel(
    _root,
    info: GraphQLResolveInfo,
    id: str,
    prorate: bool | None = None,  # noqa: A002
) -> dict:
    store, shop = context(info)
    try:
        sub = store.subscription_cancel(shop=shop, gid=id)
    except Refused as refused:
        return {"appSubscription": None, "userErrors": user_errors(refused)}
    return {"appSubscription": subscription_view(store, sub), "userErrors": []}


def resolve_line_item_update(
    _root,
    info: GraphQLResolveInfo,
    id: str,
    cappedAmount: dict,  # noqa: A002, N803
) -> dict:
    store, shop = context(info)
    try:
        sub = store.cap_update_request(
            shop=shop,
            line_gid=id,
            amount=cappedAmount["amount"],
            currency=cappedAmount["currencyCode"],
        )
    except Refused as refused:
        return {
            "appSubscription": None,
            "confirmationUrl": None,
            "userErrors": user_errors(refused),
        }
    return {
        "appSubscription": subscription_view(store, sub),
        "confirmationUrl": store.cap_confirmation_url(sub, sub.usage_line()),
        "userErrors": [],
    }


def resolve_usage_record_create(
    _root,
    info: GraphQLResolveInfo,
    subscriptionLineItemId: str,  # noqa: N803
    price: dict,
    description: str,
    idempotencyKey: str | None = None,  # noqa: N803
) -> dict:
    store, shop = context(info)
    try:
        record = store.usage_record_create(
            shop=shop,
            line_gid=subscriptionLineItemId,
            price=price["amount"],
            currency=price["currencyCode"],
            description=description,
            idempotency_key=idempotencyKey,
        )
    except Refused as refused:
        return {"appUsageRecord": None, "userErrors": user_errors(refused)}
    return {"appUsageRecord": record_view(store, record), "userErrors": []}


def resolvers_attach(schema: GraphQLSchema) -> GraphQLSchema:
    query, mutation = schema.query_type, schema.mutation_type
    query.fields["currentAppInstallation"].resolve = resolve_installation
    query.fields["node"].resolve = resolve_node
    query.fields["shopBillingPreferences"].resolve = resolve_billing_preferences
    mutation.fields["appSubscriptionCreate"].resolve = resolve_subscription_create
    mutation.fields["appSubscriptionCancel"].resolve = resolve_subscription_cancel
    mutation.fields["appSubscriptionLineItemUpdate"].resolve = resolve_line_item_update
    mutation.fields["appUsageRecordCreate"].resolve = resolve_usage_record_create
    return schema

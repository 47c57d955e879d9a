"""The Admin GraphQL subset we use (docs/shopify.md), built by graphql-core from Shopify's SDL.
Names and shapes are Shopify's so that the adapter's queries validate here as they would there."""

from decimal import Decimal, InvalidOperation

from graphql import GraphQLError, GraphQLSchema, build_schema

SDL = """
scalar URL
scalar DateTime
scalar Decimal
enum CurrencyCode { USD EUR GBP CAD AUD }
enum AppSubscriptionStatus { PENDING ACTIVE DECLINED EXPIRED FROZEN CANCELLED ACCEPTED }
enum AppPricingInterval { EVERY_30_DAYS ANNUAL }
enum AppSubscriptionReplacementBehavior {
  APPLY_IMMEDIATELY
  APPLY_ON_NEXT_BILLING_CYCLE
  STANDARD
}
interface Node { id: ID! }
type MoneyV2 { amount: Decimal! currencyCode: CurrencyCode! }
input MoneyInput { amount: Decimal! currencyCode: CurrencyCode! }
type UserError { field: [String!] message: String! }
type AppRecurringPricing { price: MoneyV2! interval: AppPricingInterval! }
type AppUsagePricing {
  balanceUsed: MoneyV2!
  cappedAmount: MoneyV2!
  interval: AppPricingInterval!
  terms: String!
}
union AppPricingDetails = AppRecurringPricing | AppUsagePricing
type AppPlanV2 { pricingDetails: AppPricingDetails! }
type AppUsageRecord implements Node {
  id: ID!
  createdAt: DateTime!
  description: String!
  idempotencyKey: String
  price: MoneyV2!
  subscriptionLineItem: AppSubscriptionLineItem!
}
type AppUsageRecordEdge { node: AppUsageRecord! }
type AppUsageRecordConnection { edges: [AppUsageRecordEdge!]! }
type AppSubscriptionLineItem implements Node {
  id: ID!
  plan: AppPlanV2!
  usageRecords(first: Int): AppUsageRecordConnection!
}
type AppSubscription implements Node {
  id: ID!
  name: String!
  status: AppSubscriptionStatus!
  createdAt: DateTime!
  currentPeriodEnd: DateTime
  test: Boolean!
  returnUrl: URL!
  lineItems: [AppSubscriptionLineItem!]!
}
type AppSubscriptionEdge { node: AppSubscription! }
type AppSubscriptionConnection { edges: [AppSubscriptionEdge!]! }
type AppInstallation {
  id: ID!
  activeSubscriptions: [AppSubscription!]!
  allSubscriptions(first: Int): AppSubscriptionConnection!
}
type ShopBillingPreferences { currency: CurrencyCode! }
type Query {
  currentAppInstallation: AppInstallation!
  node(id: ID!): Node
  shopBillingPreferences: ShopBillingPreferences!
}
input AppRecurringPricingInput { price: MoneyInput! interval: AppPricingInterval }
input AppUsagePricingInput { cappedAmount: MoneyInput! terms: String! }
input AppPlanInput {
  appRecurringPricingDetails: AppRecurringPricingInput
  appUsagePricingDetails: AppUsagePricingInput
}
input AppSubscriptionLineItemInput { plan: AppPlanInput! }
type AppSubscriptionCreatePayload {
  appSubscription: AppSubscription
  confirmationUrl: URL
  userErrors: [UserError!]!
}
type AppSubscriptionCancelPayload { appSubscription: AppSubscription userErrors: [UserError!]! }
type AppSubscriptionLineItemUpdatePayload {
  appSubscription: AppSubscription
  confirmationUrl: URL
  userErrors: [UserError!]!
}
type AppUsageRecordCreatePayload { appUsageRecord: AppUsageRecord userErrors: [UserError!]! }
type Mutation {
  appSubscriptionCreate(
    name: String!
    lineItems: [AppSubscriptionLineItemInput!]!
    returnUrl: URL!
    test: Boolean
    trialDays: Int
    replacementBehavior: AppSubscriptionReplacementBehavior
  ): AppSubscriptionCreatePayload
  appSubscriptionCancel(id: ID!, prorate: Boolean): AppSubscriptionCancelPayload
  appSubscriptionLineItemUpdate(
    id: ID!
    cappedAmount: MoneyInput!
  ): AppSubscriptionLineItemUpdatePayload
  appUsageRecordCreate(
    subscriptionLineItemId: ID!
    price: MoneyInput!
    description: String!
    idempotencyKey: String
  ): AppUsageRecordCreatePayload
}
"""


def decimal_parse(value: object) -> Decimal:
    """Shopify takes a Decimal as a string ("10.00") or a JSON number; floats go via str."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise GraphQLError(f"Decimal cannot represent {value!r}")
    try:
        parsed = Decimal(str(value))
    except InvalidOperation:
        raise GraphQLError(f"Decimal cannot represent {value!r}") from None
    if not parsed.is_finite():
        raise GraphQLError(f"Decimal cannot represent {value!r}")
    return parsed


def decimal_serialize(value: object) -> str:
    # Every currency the subset knows has two decimals: "10.00", as Shopify answers.
    return format(Decimal(str(value)), ".2f")


def schema_build() -> GraphQLSchema:
    schema = build_schema(SDL)
    decimal = schema.type_map["Decimal"]
    # graphql-core 3.3 reads coerce_*; older code paths still call parse_value/serialize.
    decimal.parse_value = decimal.coerce_input_value = decimal_parse  # type: ignore[attr-defined]
    decimal.serialize = decimal.coerce_output_value = decimal_serialize  # type: ignore[attr-defined]
    return schema

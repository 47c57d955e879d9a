"""The Shopify adapter: the only module that imports `gql` (Shopify's Admin GraphQL API).

It speaks to each shop's Admin API with that shop's access token: Shopify itself in production,
the stand-in (scripts/shopify_standin.py) in development and tests, through the same queries.
The rest of the portal sees plain results (`SubscriptionState`, `UsageRecord`) in integer minor
units, and errors of our own in plain words; never a GraphQL document or a token.

Errors say what the caller may do next: `ShopifyUnavailable` means the answer is unknown (a
timeout, a 5xx, a dropped connection: the request may have been carried out), so a money call is
settled by asking Shopify, never by sending something new; `ShopifyRefused` means Shopify
answered with userErrors and did nothing.
"""

import base64
import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from gql import Client, GraphQLRequest
from gql.transport.exceptions import (
    TransportConnectionFailed,
    TransportError,
    TransportProtocolError,
    TransportQueryError,
    TransportServerError,
)
from gql.transport.requests import RequestsHTTPTransport

from accounts.models import ShopifyShop
from plans.money import currency_exponent, to_minor

logger = logging.getLogger(__name__)

# Shopify's own limit on appUsageRecordCreate's idempotencyKey.
IDEMPOTENCY_KEY_MAX = 255
# Shopify's message when a usage record would take the interval over the approved cap.
CAP_EXCEEDED = "Total price exceeds balance remaining"


class ShopifyError(Exception):
    """Shopify did not do what we asked; the message is in plain words."""

    retryable = False


class ShopifyUnavailable(ShopifyError):
    """No answer (timeout, 5xx, dropped connection): the request may or may not have been
    carried out."""

    retryable = True


class ShopifyAuthError(ShopifyError):
    """Shopify refused the shop's access token (the app was uninstalled or the token revoked)."""


class ShopifyRefused(ShopifyError):
    """Shopify answered with userErrors (or query errors) and changed nothing."""

    def __init__(self, messages: list[str]):
        self.messages = messages
        super().__init__("; ".join(messages) or "Shopify refused the request.")


class ShopifyCapExceeded(ShopifyRefused):
    """The usage record would take the interval's charges over the approved cap."""


@dataclass(frozen=True)
class SubscriptionState:
    gid: str
    name: str
    status: str
    created_at: datetime | None
    current_period_end: datetime | None
    currency: str
    recurring_line_gid: str = ""
    recurring_minor: int = 0
    usage_line_gid: str = ""
    capped_minor: int = 0
    balance_used_minor: int = 0
    terms: str = ""
    test: bool = False


@dataclass(frozen=True)
class CreatedSubscription:
    state: SubscriptionState
    confirmation_url: str


@dataclass(frozen=True)
class UsageRecord:
    gid: str
    created_at: datetime | None
    amount_minor: int
    currency: str
    description: str
    idempotency_key: str


# --- money and times in Shopify's shapes -------------------------------------------------------


def money_input(amount_minor: int, currency: str) -> dict[str, str]:
    """MoneyInput: a decimal string in major units ("12.50"), exact."""
    exponent = currency_exponent(currency)
    amount = Decimal(amount_minor).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent))
    return {"amount": str(amount), "currencyCode": currency}


def money_minor(money: dict[str, Any] | None) -> int:
    """A MoneyV2 ({amount, currencyCode}) in minor units."""
    if not money:
        return 0
    return to_minor(Decimal(str(money["amount"])), money["currencyCode"])


def _instant(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


# --- the transport -----------------------------------------------------------------------------


def _endpoint(shop: ShopifyShop) -> str:
    return settings.SHOPIFY_ADMIN_URL.format(shop=shop.shop_domain)


def _execute(shop: ShopifyShop, document: str, variables: dict[str, Any] | None = None) -> dict:
    """Run one query or mutation for a shop; the data, or one of our errors."""
    transport = RequestsHTTPTransport(
        url=_endpoint(shop),
        headers={"X-Shopify-Access-Token": shop.access_token},
        timeout=settings.SHOPIFY_TIMEOUT_SECONDS,
        retries=0,  # a money call is never re-sent blindly: the caller settles lost answers
        verify=True,
    )
    client = Client(transport=transport, fetch_schema_from_transport=False)
    request = GraphQLRequest(document, variable_values=variables or {})
    statuses: list[int] = []
    try:
        with client as session:
            # gql turns any JSON body with "errors" into TransportQueryError, whatever the HTTP
            # status: a 401 or a 500 would look like a refusal. The status decides instead.
            assert transport.session is not None  # connected by `with client`
            transport.session.hooks["response"].append(
                lambda response, *args, **kwargs: statuses.append(response.status_code)
            )
            return session.execute(request)
    except TransportQueryError as exc:
        status = statuses[-1] if statuses else 200
        if status == 401:
            raise _auth_error(shop) from exc
        if status >= 500 or status in (408, 429):
            raise ShopifyUnavailable(f"Shopify answered {status}: no result known.") from exc
        errors = exc.errors if isinstance(exc.errors, list) else [exc.errors or str(exc)]
        messages = [
            str(error.get("message", error)) if isinstance(error, dict) else str(error)
            for error in errors
        ]
        raise ShopifyRefused(messages) from exc
    except TransportServerError as exc:
        if exc.code == 401:
            raise _auth_error(shop) from exc
        if exc.code is not None and 400 <= exc.code < 500 and exc.code not in (408, 429):
            raise ShopifyRefused([f"Shopify answered {exc.code}."]) from exc
        raise ShopifyUnavailable(f"Shopify answered {exc.code}: no result known.") from exc
    except (TransportConnectionFailed, TransportProtocolError) as exc:
        raise ShopifyUnavailable(f"No answer from Shopify for {shop.shop_domain}.") from exc
    except TransportError as exc:
        raise ShopifyUnavailable(f"Shopify could not be reached: {exc}") from exc


def _auth_error(shop: ShopifyShop) -> ShopifyAuthError:
    return ShopifyAuthError(
        f"Shopify refused the app's access token for {shop.shop_domain}: the app may have been "
        "uninstalled."
    )


def _payload(data: dict, field: str) -> dict:
    """A mutation's payload, or ShopifyRefused with its userErrors."""
    payload = data.get(field) or {}
    errors = [error["message"] for error in payload.get("userErrors") or []]
    if errors:
        if any(CAP_EXCEEDED.lower() in message.lower() for message in errors):
            raise ShopifyCapExceeded(errors)
        raise ShopifyRefused(errors)
    return payload


# --- reading -----------------------------------------------------------------------------------

_SUBSCRIPTION_FIELDS = """
  id name status createdAt currentPeriodEnd test
  lineItems {
    id
    plan {
      pricingDetails {
        __typename
        ... on AppRecurringPricing { price { amount currencyCode } interval }
        ... on AppUsagePricing {
          balanceUsed { amount currencyCode } cappedAmount { amount currencyCode } terms interval
        }
      }
    }
  }
"""


def _state(node: dict, currency: str = "") -> SubscriptionState:
    values: dict[str, Any] = {}
    for line in node.get("lineItems") or []:
        details = line["plan"]["pricingDetails"]
        if details["__typename"] == "AppRecurringPricing":
            values["recurring_line_gid"] = line["id"]
            values["recurring_minor"] = money_minor(details["price"])
            currency = details["price"]["currencyCode"]
        else:
            values["usage_line_gid"] = line["id"]
            values["capped_minor"] = money_minor(details["cappedAmount"])
            values["balance_used_minor"] = money_minor(details["balanceUsed"])
            values["terms"] = details["terms"]
            currency = details["cappedAmount"]["currencyCode"]
    return SubscriptionState(
        gid=node["id"],
        name=node["name"],
        status=node["status"],
        created_at=_instant(node.get("createdAt")),
        current_period_end=_instant(node.get("currentPeriodEnd")),
        currency=currency,
        test=bool(node.get("test")),
        **values,
    )


def subscription_get(*, shop: ShopifyShop, gid: str) -> SubscriptionState:
    """One app subscription as Shopify has it now (status, cap, balance used this interval)."""
    data = _execute(
        shop,
        f"query Subscription($id: ID!) {{ node(id: $id) {{ ... on AppSubscription {{"
        f" {_SUBSCRIPTION_FIELDS} }} }} }}",
        {"id": gid},
    )
    if not data.get("node"):
        raise ShopifyRefused([f"Shopify has no app subscription {gid}."])
    return _state(data["node"])


def active_subscriptions(*, shop: ShopifyShop) -> list[SubscriptionState]:
    """currentAppInstallation → activeSubscriptions: what Shopify bills the shop for now."""
    data = _execute(
        shop,
        f"query Active {{ currentAppInstallation {{ activeSubscriptions {{"
        f" {_SUBSCRIPTION_FIELDS} }} }} }}",
    )
    return [_state(node) for node in data["currentAppInstallation"]["activeSubscriptions"]]


def usage_records(*, shop: ShopifyShop, line_gid: str, first: int = 250) -> list[UsageRecord]:
    """The usage records Shopify holds on a usage line (for reconciliation)."""
    data = _execute(
        shop,
        """query Records($id: ID!, $first: Int) {
          node(id: $id) { ... on AppSubscriptionLineItem {
            usageRecords(first: $first) { edges { node {
              id createdAt description idempotencyKey price { amount currencyCode }
            } } }
          } }
        }""",
        {"id": line_gid, "first": first},
    )
    node = data.get("node") or {}
    return [_record(edge["node"]) for edge in (node.get("usageRecords") or {}).get("edges", [])]


def _record(node: dict) -> UsageRecord:
    return UsageRecord(
        gid=node["id"],
        created_at=_instant(node.get("createdAt")),
        amount_minor=money_minor(node["price"]),
        currency=node["price"]["currencyCode"],
        description=node["description"],
        idempotency_key=node.get("idempotencyKey") or "",
    )


# --- writing -----------------------------------------------------------------------------------


def subscription_create(
    *,
    shop: ShopifyShop,
    name: str,
    recurring_minor: int,
    usage_cap_minor: int,
    usage_terms: str,
    currency: str,
    return_url: str,
    replacement_behavior: str | None = None,
    test: bool = False,
) -> CreatedSubscription:
    """appSubscriptionCreate with one recurring line (every 30 days) and one usage line; the
    merchant approves at the confirmation URL (nothing is billed before)."""
    line_items: list[dict[str, Any]] = []
    if recurring_minor > 0:
        line_items.append(
            {
                "plan": {
                    "appRecurringPricingDetails": {
                        "price": money_input(recurring_minor, currency),
                        "interval": "EVERY_30_DAYS",
                    }
                }
            }
        )
    line_items.append(
        {
            "plan": {
                "appUsagePricingDetails": {
                    "cappedAmount": money_input(usage_cap_minor, currency),
                    "terms": usage_terms,
                }
            }
        }
    )
    variables: dict[str, Any] = {
        "name": name,
        "lineItems": line_items,
        "returnUrl": return_url,
        "test": test,
    }
    if replacement_behavior:
        variables["replacementBehavior"] = replacement_behavior
    data = _execute(
        shop,
        f"""mutation Create($name: String!, $lineItems: [AppSubscriptionLineItemInput!]!,
            $returnUrl: URL!, $test: Boolean,
            $replacementBehavior: AppSubscriptionReplacementBehavior) {{
          appSubscriptionCreate(name: $name, lineItems: $lineItems, returnUrl: $returnUrl,
                                test: $test, replacementBehavior: $replacementBehavior) {{
            appSubscription {{ {_SUBSCRIPTION_FIELDS} }}
            confirmationUrl
            userErrors {{ field message }}
          }}
        }}""",
        variables,
    )
    payload = _payload(data, "appSubscriptionCreate")
    return CreatedSubscription(
        state=_state(payload["appSubscription"], currency),
        confirmation_url=payload["confirmationUrl"],
    )


def subscription_cancel(*, shop: ShopifyShop, gid: str) -> SubscriptionState:
    """appSubscriptionCancel: Shopify stops billing it at once."""
    data = _execute(
        shop,
        f"""mutation Cancel($id: ID!) {{
          appSubscriptionCancel(id: $id) {{
            appSubscription {{ {_SUBSCRIPTION_FIELDS} }}
            userErrors {{ field message }}
          }}
        }}""",
        {"id": gid},
    )
    return _state(_payload(data, "appSubscriptionCancel")["appSubscription"])


def cap_update(*, shop: ShopifyShop, line_gid: str, capped_minor: int, currency: str) -> str:
    """appSubscriptionLineItemUpdate: ask for a higher cap; the merchant approves it at the
    returned confirmation URL (the cap is unchanged until then)."""
    data = _execute(
        shop,
        """mutation Cap($id: ID!, $cappedAmount: MoneyInput!) {
          appSubscriptionLineItemUpdate(id: $id, cappedAmount: $cappedAmount) {
            confirmationUrl
            userErrors { field message }
          }
        }""",
        {"id": line_gid, "cappedAmount": money_input(capped_minor, currency)},
    )
    return _payload(data, "appSubscriptionLineItemUpdate")["confirmationUrl"]


def usage_record_create(
    *,
    shop: ShopifyShop,
    line_gid: str,
    amount_minor: int,
    currency: str,
    description: str,
    idempotency_key: str,
) -> UsageRecord:
    """appUsageRecordCreate. The same key always gets Shopify's first answer back (it never
    charges twice for one key), so a retry after a lost answer sends the same key."""
    if len(idempotency_key) > IDEMPOTENCY_KEY_MAX:
        raise ValueError("Shopify takes idempotency keys of at most 255 characters")
    data = _execute(
        shop,
        """mutation Usage($line: ID!, $price: MoneyInput!, $description: String!, $key: String) {
          appUsageRecordCreate(subscriptionLineItemId: $line, price: $price,
                               description: $description, idempotencyKey: $key) {
            appUsageRecord {
              id createdAt description idempotencyKey price { amount currencyCode }
            }
            userErrors { field message }
          }
        }""",
        {
            "line": line_gid,
            "price": money_input(amount_minor, currency),
            "description": description,
            "key": idempotency_key,
        },
    )
    return _record(_payload(data, "appUsageRecordCreate")["appUsageRecord"])


# --- webhooks ----------------------------------------------------------------------------------


def webhook_verify(*, body: bytes, hmac_header: str) -> bool:
    """Whether a webhook was signed with our app's secret (X-Shopify-Hmac-Sha256: base64 of the
    HMAC-SHA256 of the raw body). Compared in constant time; no secret, no webhook."""
    secret = settings.SHOPIFY_API_SECRET
    if not secret or not hmac_header:
        return False
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return hmac.compare_digest(base64.b64encode(digest).decode(), hmac_header.strip())

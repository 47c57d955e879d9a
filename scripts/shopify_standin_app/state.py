"""The stand-in's memory: shops, app subscriptions, usage records, its own clock and the faults
it was asked to inject. Every method is called with `lock` held (the server takes it once per
request), so a request sees and changes one consistent state."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

INTERVAL = timedelta(days=30)
# Shopify expires a charge the merchant has not approved within two days.
PENDING_LIFETIME = timedelta(days=2)
APPROACHING_SHARE = Decimal("0.9")
CURRENCIES = ("USD", "EUR", "GBP", "CAD", "AUD")
IDEMPOTENCY_KEY_MAX = 255
CAP_EXCEEDED = "Total price exceeds balance remaining"
SETTABLE_STATUSES = ("FROZEN", "ACTIVE", "CANCELLED")
FAULT_MODES = ("error", "lose_answer", "timeout")

SUBSCRIPTION_GID = re.compile(r"^gid://shopify/AppSubscription/(\d+)$")
LINE_GID = re.compile(r"^gid://shopify/AppSubscriptionLineItem/(\d+)\?v=1&index=(\d+)$")
RECORD_GID = re.compile(r"^gid://shopify/AppUsageRecord/(\d+)$")


class Refused(Exception):
    """What Shopify answers with a userError rather than doing the work."""

    def __init__(self, message: str, field_path: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.field_path = field_path


class PageError(Exception):
    """A confirmation page that cannot be shown or acted on (bad link, charge not pending)."""

    def __init__(self, status: int, title: str, text: str):
        super().__init__(text)
        self.status, self.title, self.text = status, title, text


class ControlError(Exception):
    """A control-API request the stand-in refuses (the message says what to send instead)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def money_text(amount: Decimal) -> str:
    return format(amount, ".2f")


def shopify_time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Shop:
    domain: str
    token: str
    currency: str
    number: int
    installed: bool = True


@dataclass
class LineItem:
    subscription_number: int
    index: int
    interval: str
    recurring_price: Decimal | None = None
    capped_amount: Decimal | None = None
    terms: str = ""
    # A cap raise asked for with appSubscriptionLineItemUpdate, until the merchant decides.
    pending_cap: Decimal | None = None

    @property
    def gid(self) -> str:
        return f"gid://shopify/AppSubscriptionLineItem/{self.subscription_number}?v=1&index={self.index}"

    @property
    def is_usage(self) -> bool:
        return self.capped_amount is not None


@dataclass
class Subscription:
    number: int
    shop: str
    name: str
    currency: str
    return_url: str
    test: bool
    trial_days: int
    replacement_behavior: str
    created_at: datetime
    updated_at: datetime
    lines: list[LineItem]
    status: str = "PENDING"
    current_period_end: datetime | None = None
    activated_at: datetime | None = None
    # APPLY_ON_NEXT_BILLING_CYCLE: approved, waiting for the replaced one's interval to end.
    activates_at: datetime | None = None
    replaces: int | None = None
    # The interval end for which app_subscriptions/approaching_capped_amount was sent.
    approaching_sent_for: datetime | None = None

    @property
    def gid(self) -> str:
        return f"gid://shopify/AppSubscription/{self.number}"

    def usage_line(self) -> LineItem | None:
        return next((line for line in self.lines if line.is_usage), None)


@dataclass
class UsageRecord:
    number: int
    subscription_number: int
    line_index: int
    shop: str
    created_at: datetime
    description: str
    idempotency_key: str | None
    price: Decimal
    currency: str

    @property
    def gid(self) -> str:
        return f"gid://shopify/AppUsageRecord/{self.number}"


@dataclass
class Fault:
    mode: str
    count: int
    operation: str | None
    seconds: float
    fired: int = 0


@dataclass
class Store:
    """Shopify as far as our app can see it."""

    base_url: str
    default_webhook_url: str
    default_api_secret: str
    # The demo's clock file (billing_portal/demo_clock.py: an offset in seconds, as text), so
    # `make demo-advance` moves Shopify's time with the portal's.
    clock_file: Path | None = None
    # Called with (topic, shop domain, payload) for each webhook Shopify would send.
    emit: Callable[[str, str, dict], None] = lambda topic, shop, payload: None
    lock: threading.RLock = field(default_factory=threading.RLock)
    # Signs confirmation links; the process' own, so a link cannot be forged by a test.
    page_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    generation: int = 0

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.webhook_url = self.default_webhook_url
        self.api_secret = self.default_api_secret
        self.offset = timedelta(0)
        self.shops: dict[str, Shop] = {}
        self.subscriptions: dict[int, Subscription] = {}
        self.records: dict[int, UsageRecord] = {}
        self.idempotency: dict[tuple[str, str], int] = {}
        self.faults: list[Fault] = []
        self.faults_fired = 0
        # Distinct number ranges make a mixed-up id obvious in a failing test.
        self.next_shop, self.next_subscription, self.next_record = 601, 1001, 5001
        # Webhooks queued before a reset belong to the previous test: the sender drops them.
        self.generation += 1

    # --- clock -------------------------------------------------------------------------------
    def now(self) -> datetime:
        # Whole seconds, as Shopify's DateTime shows them: what we store is what we answer.
        return (datetime.now(UTC) + self.offset + self.file_offset()).replace(microsecond=0)

    def file_offset(self) -> timedelta:
        if self.clock_file is None:
            return timedelta(0)
        try:
            return timedelta(seconds=float(self.clock_file.read_text().strip() or 0))
        except (FileNotFoundError, ValueError):
            return timedelta(0)  # no advance yet (or a half-written file: next read has it)

    def clock_set(self, *, now: datetime | None = None, advance_days: float | None = None) -> None:
        if now is not None:
            self.offset = now.astimezone(UTC) - datetime.now(UTC) - self.file_offset()
        if advance_days is not None:
            self.offset += timedelta(days=advance_days)
        self.tick()

    def tick(self) -> None:
        """Apply what time did since the last request: expiries, deferred starts, renewals."""
        now = self.now()
        for sub in list(self.subscriptions.values()):
            if sub.status == "PENDING" and now >= sub.created_at + PENDING_LIFETIME:
                self._status_change(sub, "EXPIRED")
        # Deferred replacements start before intervals roll: the replaced subscription ends
        # at its interval's end, not one interval later.
        for sub in sorted(self.subscriptions.values(), key=lambda s: s.number):
            if sub.status == "ACCEPTED" and sub.activates_at and now >= sub.activates_at:
                old = self.subscriptions.get(sub.replaces) if sub.replaces else None
                if old and old.status in ("ACTIVE", "FROZEN"):
                    self._status_change(old, "CANCELLED")
                sub.activated_at = sub.activates_at
                self._status_change(sub, "ACTIVE")
        for sub in self.subscriptions.values():
            if sub.status in ("ACTIVE", "FROZEN") and sub.current_period_end:
                while now >= sub.current_period_end:
                    sub.current_period_end += INTERVAL

    # --- shops -------------------------------------------------------------------------------
    def shop_put(self, *, domain: str, token: str, currency: str) -> Shop:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*\.myshopify\.com", domain or ""):
            raise ControlError(400, f"shop_domain {domain!r} is not like 'my-store.myshopify.com'")
        if not token:
            raise ControlError(400, "access_token is required")
        if currency not in CURRENCIES:
            raise ControlError(400, f"currency {currency!r} is not one of {', '.join(CURRENCIES)}")
        shop = self.shops.get(domain)
        if shop is None:
            shop = self.shops[domain] = Shop(domain, token, currency, self.next_shop)
            self.next_shop += 1
        shop.token, shop.currency, shop.installed = token, currency, True
        return shop

    def shop_get(self, domain: str) -> Shop:
        shop = self.shops.get(domain)
        if shop is None:
            known = ", ".join(sorted(self.shops)) or "none yet"
            raise ControlError(
                404,
                f"The Shopify stand-in has no shop {domain!r} (shops: {known}). Create it with "
                "POST /_standin/shops {shop_domain, access_token, currency}.",
            )
        return shop

    def uninstall(self, domain: str) -> None:
        shop = self.shop_get(domain)
        shop.installed = False  # its access token stops working, as Shopify revokes it
        for sub in self.subscriptions.values():
            if sub.shop == domain and sub.status in ("PENDING", "ACTIVE", "FROZEN", "ACCEPTED"):
                sub.status, sub.updated_at = "CANCELLED", self.now()
        self.emit(
            "app/uninstalled",
            domain,
            {
                "id": shop.number,
                "name": domain.removesuffix(".myshopify.com"),
                "domain": domain,
                "myshopify_domain": domain,
            },
        )

    # --- lookups -----------------------------------------------------------------------------
    def subscription_of(self, shop: Shop, gid: str) -> Subscription | None:
        match = SUBSCRIPTION_GID.match(gid or "")
        sub = self.subscriptions.get(int(match.group(1))) if match else None
        return sub if sub and sub.shop == shop.domain else None

    def line_of(self, shop: Shop, gid: str) -> tuple[Subscription, LineItem] | None:
        match = LINE_GID.match(gid or "")
        if not match:
            return None
        sub = self.subscriptions.get(int(match.group(1)))
        index = int(match.group(2))
        if sub is None or sub.shop != shop.domain or index >= len(sub.lines):
            return None
        return sub, sub.lines[index]

    def record_of(self, shop: Shop, gid: str) -> UsageRecord | None:
        match = RECORD_GID.match(gid or "")
        record = self.records.get(int(match.group(1))) if match else None
        return record if record and record.shop == shop.domain else None

    def subscription_by_number(self, number: int) -> Subscription:
        sub = self.subscriptions.get(number)
        if sub is None:
            raise ControlError(404, f"No app subscription number {number} on the stand-in.")
        return sub

    def interval_start(self, sub: Subscription) -> datetime | None:
        return None if sub.current_period_end is None else sub.current_period_end - INTERVAL

    def balance_used(self, sub: Subscription, line: LineItem) -> Decimal:
        """What the usage line charged in the subscription's current 30-day interval."""
        start = self.interval_start(sub)
        if start is None:
            return Decimal("0")
        return sum(
            (
                r.price
                for r in self.records.values()
                if r.subscription_number == sub.number
                and r.line_index == line.index
                and start <= r.created_at < sub.current_period_end
            ),
            Decimal("0"),
        )

    def records_of(self, line: LineItem) -> list[UsageRecord]:
        return [
            r
            for r in self.records.values()
            if r.subscription_number == line.subscription_number and r.line_index == line.index
        ]

    # --- mutations ---------------------------------------------------------------------------
    def subscription_create(
        self,
        *,
        shop: Shop,
        name: str,
        line_inputs: list[dict],
        return_url: str,
        test: bool,
        trial_days: int,
        replacement_behavior: str,
    ) -> Subscription:
        if not name.strip():
            raise Refused("Name can't be blank", ["name"])
        if not line_inputs:
            raise Refused("At least one line item is required", ["lineItems"])
        if trial_days < 0:
            raise Refused("Trial days must be greater than or equal to 0", ["trialDays"])
        number = self.next_subscription
        lines: list[LineItem] = []
        for index, line_input in enumerate(line_inputs):
            lines.append(self._line_build(shop, number, index, line_input["plan"]))
        recurring = [line for line in lines if not line.is_usage]
        usage = [line for line in lines if line.is_usage]
        if len(recurring) > 1 or len(usage) > 1:
            raise Refused(
                "A subscription can have at most one recurring and one usage line item",
                ["lineItems"],
            )
        if recurring and usage and recurring[0].interval != "EVERY_30_DAYS":
            raise Refused(
                "Annual subscriptions with usage line items aren't supported: use "
                "EVERY_30_DAYS for the recurring line item",
                ["lineItems", "0", "plan", "appRecurringPricingDetails", "interval"],
            )
        self.next_subscription += 1
        now = self.now()
        sub = Subscription(
            number=number,
            shop=shop.domain,
            name=name,
            currency=shop.currency,
            return_url=return_url,
            test=test,
            trial_days=trial_days,
            replacement_behavior=replacement_behavior,
            created_at=now,
            updated_at=now,
            lines=lines,
        )
        self.subscriptions[number] = sub
        return sub

    def _line_build(self, shop: Shop, number: int, index: int, plan: dict) -> LineItem:
        recurring = plan.get("appRecurringPricingDetails")
        usage = plan.get("appUsagePricingDetails")
        where = ["lineItems", str(index), "plan"]
        if bool(recurring) == bool(usage):
            raise Refused(
                "Each line item's plan needs exactly one of appRecurringPricingDetails or "
                "appUsagePricingDetails",
                where,
            )
        if recurring:
            self._currency_check(shop, recurring["price"]["currencyCode"], where)
            price = recurring["price"]["amount"]
            if price < 0:
                raise Refused("Price must be greater than or equal to 0", where)
            interval = recurring.get("interval") or "EVERY_30_DAYS"
            return LineItem(number, index, interval, recurring_price=price)
        self._currency_check(shop, usage["cappedAmount"]["currencyCode"], where)
        cap = usage["cappedAmount"]["amount"]
        if cap <= 0:
            raise Refused("Capped amount must be greater than 0", [*where, "cappedAmount"])
        if not usage["terms"].strip():
            raise Refused("Terms can't be blank", [*where, "terms"])
        return LineItem(number, index, "EVERY_30_DAYS", capped_amount=cap, terms=usage["terms"])

    def _currency_check(self, shop: Shop, currency: str, where: list[str]) -> None:
        if currency != shop.currency:
            raise Refused(
                f"Currency must be the shop's billing currency ({shop.currency}), not {currency}",
                where,
            )

    def subscription_cancel(self, *, shop: Shop, gid: str) -> Subscription:
        sub = self.subscription_of(shop, gid)
        if sub is None:
            raise Refused("Subscription not found", ["id"])
        if sub.status not in ("PENDING", "ACTIVE", "FROZEN", "ACCEPTED"):
            raise Refused(f"Cannot cancel a subscription that is {sub.status.lower()}", ["id"])
        self._status_change(sub, "CANCELLED")
        return sub

    def cap_update_request(
        self, *, shop: Shop, line_gid: str, amount: Decimal, currency: str
    ) -> Subscription:
        found = self.line_of(shop, line_gid)
        if found is None or not found[1].is_usage:
            raise Refused("Usage line item not found", ["id"])
        sub, line = found
        if sub.status != "ACTIVE":
            raise Refused("Subscription is not active", ["id"])
        self._currency_check(shop, currency, ["cappedAmount"])
        if amount <= line.capped_amount:
            raise Refused(
                "The capped amount must be greater than the existing capped amount",
                ["cappedAmount"],
            )
        line.pending_cap = amount
        return sub

    def usage_record_create(
        self,
        *,
        shop: Shop,
        line_gid: str,
        price: Decimal,
        currency: str,
        description: str,
        idempotency_key: str | None,
    ) -> UsageRecord:
        if idempotency_key is not None and len(idempotency_key) > IDEMPOTENCY_KEY_MAX:
            raise Refused(
                f"Idempotency key must be at most {IDEMPOTENCY_KEY_MAX} characters",
                ["idempotencyKey"],
            )
        if idempotency_key is not None and (shop.domain, idempotency_key) in self.idempotency:
            # Shopify answers a repeated key with the first record, whatever the price now.
            return self.records[self.idempotency[(shop.domain, idempotency_key)]]
        found = self.line_of(shop, line_gid)
        if found is None or not found[1].is_usage:
            raise Refused("Usage line item not found", ["subscriptionLineItemId"])
        sub, line = found
        if sub.status != "ACTIVE":
            raise Refused("Subscription is not active", ["subscriptionLineItemId"])
        self._currency_check(shop, currency, ["price"])
        if price <= 0:
            raise Refused("Price must be greater than 0", ["price"])
        if not description.strip():
            raise Refused("Description can't be blank", ["description"])
        used = self.balance_used(sub, line)
        if used + price > line.capped_amount:
            raise Refused(CAP_EXCEEDED, ["price"])
        record = UsageRecord(
            number=self.next_record,
            subscription_number=sub.number,
            line_index=line.index,
            shop=shop.domain,
            created_at=self.now(),
            description=description,
            idempotency_key=idempotency_key,
            price=price,
            currency=currency,
        )
        self.next_record += 1
        self.records[record.number] = record
        if idempotency_key is not None:
            self.idempotency[(shop.domain, idempotency_key)] = record.number
        if (
            used + price >= line.capped_amount * APPROACHING_SHARE
            and sub.approaching_sent_for != sub.current_period_end
        ):
            sub.approaching_sent_for = sub.current_period_end
            self.emit(
                "app_subscriptions/approaching_capped_amount",
                sub.shop,
                self.subscription_payload(sub, with_balance=True),
            )
        return record

    # --- the merchant's decisions (confirmation pages) ---------------------------------------
    def signature(self, *parts: object) -> str:
        message = "|".join(str(part) for part in parts).encode()
        return hmac.new(self.page_key, message, hashlib.sha256).hexdigest()

    def confirmation_url(self, sub: Subscription) -> str:
        signature = self.signature("confirm", sub.shop, sub.number)
        return (
            f"{self.base_url}/{sub.shop}/admin/charges/{sub.number}/confirm?signature={signature}"
        )

    def cap_confirmation_url(self, sub: Subscription, line: LineItem) -> str:
        signature = self.signature("update", sub.shop, sub.number, line.pending_cap)
        return (
            f"{self.base_url}/{sub.shop}/admin/charges/{sub.number}/confirm_update"
            f"?signature={signature}"
        )

    def page_subscription(self, *, domain: str, number: int, kind: str, signature: str):
        """The subscription (and, for a cap raise, its usage line) a signed link is about."""
        sub = self.subscriptions.get(number)
        if sub is None or sub.shop != domain:
            raise PageError(404, "Charge not found", "This charge does not exist on this store.")
        line = sub.usage_line()
        signed = ("confirm", domain, number)
        if kind == "update":
            signed = ("update", domain, number, line.pending_cap if line else None)
        if not hmac.compare_digest(signature or "", self.signature(*signed)):
            raise PageError(
                403,
                "Link not valid",
                "This approval link is not valid (or was replaced by a newer request).",
            )
        return sub, line

    def approve(self, sub: Subscription) -> None:
        if sub.status != "PENDING":
            raise PageError(
                409,
                "Charge not pending",
                f"This charge is {sub.status.lower()}: nothing to approve.",
            )
        now = self.now()
        current = [
            s
            for s in self.subscriptions.values()
            if s.shop == sub.shop and s.number != sub.number and s.status in ("ACTIVE", "FROZEN")
        ]
        waiting = [
            s
            for s in self.subscriptions.values()
            if s.shop == sub.shop and s.number != sub.number and s.status == "ACCEPTED"
        ]
        # A newer approval supersedes a replacement that has not started yet.
        for old in waiting:
            self._status_change(old, "CANCELLED")
        if not current:
            sub.activated_at, sub.current_period_end = now, now + INTERVAL
            self._status_change(sub, "ACTIVE")
            return
        old = max(current, key=lambda s: s.current_period_end or now)
        sub.replaces = old.number
        if sub.replacement_behavior == "APPLY_ON_NEXT_BILLING_CYCLE":
            sub.activates_at = old.current_period_end
            sub.current_period_end = old.current_period_end + INTERVAL
            self._status_change(sub, "ACCEPTED")
            return
        # APPLY_IMMEDIATELY and STANDARD: the new one takes over now and keeps the interval.
        for replaced in current:
            self._status_change(replaced, "CANCELLED")
        sub.activated_at, sub.current_period_end = now, old.current_period_end
        self._status_change(sub, "ACTIVE")

    def decline(self, sub: Subscription) -> None:
        if sub.status != "PENDING":
            raise PageError(
                409,
                "Charge not pending",
                f"This charge is {sub.status.lower()}: nothing to decline.",
            )
        self._status_change(sub, "DECLINED")

    def cap_approve(self, sub: Subscription, line: LineItem) -> None:
        if line.pending_cap is None:
            raise PageError(409, "Nothing to approve", "No capped amount increase is waiting.")
        line.capped_amount, line.pending_cap = line.pending_cap, None
        sub.updated_at = self.now()
        self.emit("app_subscriptions/update", sub.shop, self.subscription_payload(sub))

    def cap_decline(self, sub: Subscription, line: LineItem) -> None:
        if line.pending_cap is None:
            raise PageError(409, "Nothing to decline", "No capped amount increase is waiting.")
        line.pending_cap = None

    # --- control API (what happens in Shopify outside our app) -------------------------------
    def status_set(self, number: int, status: str) -> Subscription:
        if status not in SETTABLE_STATUSES:
            raise ControlError(400, f"status must be one of {', '.join(SETTABLE_STATUSES)}")
        sub = self.subscription_by_number(number)
        if sub.status != status:
            if status == "ACTIVE" and sub.current_period_end is None:
                sub.activated_at, sub.current_period_end = self.now(), self.now() + INTERVAL
            self._status_change(sub, status)
        return sub

    def cap_set(self, number: int, amount: Decimal) -> Subscription:
        sub = self.subscription_by_number(number)
        line = sub.usage_line()
        if line is None:
            raise ControlError(400, f"App subscription {number} has no usage line item.")
        if amount <= 0:
            raise ControlError(400, "amount must be greater than 0")
        line.capped_amount, line.pending_cap = amount, None
        sub.updated_at = self.now()
        self.emit("app_subscriptions/update", sub.shop, self.subscription_payload(sub))
        return sub

    def fault_add(self, *, mode: str, count: int, operation: str | None, seconds: float) -> None:
        if mode not in FAULT_MODES:
            raise ControlError(400, f"mode must be one of {', '.join(FAULT_MODES)}")
        if count < 1:
            raise ControlError(400, "count must be at least 1")
        self.faults.append(Fault(mode, count, operation, seconds))

    def fault_take(self, operations: set[str]) -> Fault | None:
        """The first armed fault that applies to a request naming these operations."""
        for fault in self.faults:
            if fault.count > 0 and (fault.operation is None or fault.operation in operations):
                fault.count -= 1
                fault.fired += 1
                self.faults_fired += 1
                return fault
        return None

    # --- webhooks ------------------------------------------------------------------------------
    def _status_change(self, sub: Subscription, status: str) -> None:
        sub.status, sub.updated_at = status, self.now()
        self.emit("app_subscriptions/update", sub.shop, self.subscription_payload(sub))

    def subscription_payload(self, sub: Subscription, *, with_balance: bool = False) -> dict:
        shop = self.shops[sub.shop]
        body: dict = {
            "admin_graphql_api_id": sub.gid,
            "name": sub.name,
            "status": sub.status,
            "admin_graphql_api_shop_id": f"gid://shopify/Shop/{shop.number}",
            "created_at": sub.created_at.isoformat(),
            "updated_at": sub.updated_at.isoformat(),
            "currency": sub.currency,
        }
        line = sub.usage_line()
        if line is not None:
            body["capped_amount"] = money_text(line.capped_amount)
            if with_balance:
                body["balance_used"] = money_text(self.balance_used(sub, line))
        return {"app_subscription": body}

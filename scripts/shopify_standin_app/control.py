"""The control API under /_standin/ (not Shopify's): what tests and the demo use to set up shops,
move the stand-in's clock, act as the merchant in Shopify's own settings, and inject faults."""

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation

from .state import ControlError, Store, money_text, shopify_time
from .webhooks import Sender

DEFAULT_TIMEOUT_FAULT_SECONDS = 20.0  # past the adapter's default 15 s timeout


def decimal_of(value: object, name: str) -> Decimal:
    try:
        parsed = Decimal(str(value))
    except InvalidOperation:
        raise ControlError(400, f'{name} must be a decimal amount like "250.00"') from None
    if not parsed.is_finite():
        raise ControlError(400, f'{name} must be a decimal amount like "250.00"')
    return parsed


def handle(store: Store, sender: Sender, method: str, path: str, body: dict) -> dict:
    """Run one control request (the caller holds the store's lock); returns the JSON answer."""
    if (method, path) == ("GET", "/_standin/health"):
        return {"ok": True}
    if (method, path) == ("GET", "/_standin/state"):
        return snapshot(store, sender)
    if method != "POST":
        raise ControlError(405, f"{method} {path}: the control API takes POST here")
    if path == "/_standin/reset":
        store.reset()
        sender.clear()
        return {"ok": True}
    if path == "/_standin/config":
        if "webhook_url" in body:
            store.webhook_url = body["webhook_url"] or ""
        if "api_secret" in body:
            store.api_secret = body["api_secret"] or ""
        return {"webhook_url": store.webhook_url, "api_secret": store.api_secret}
    if path == "/_standin/clock":
        now = body.get("now")
        try:
            moment = datetime.fromisoformat(now) if now else None
        except ValueError:
            raise ControlError(400, f"now {now!r} is not an ISO 8601 instant") from None
        if moment is not None and moment.tzinfo is None:
            raise ControlError(400, "now needs a time zone, e.g. 2027-02-28T23:59:00Z")
        days = body.get("advance_days")
        store.clock_set(now=moment, advance_days=float(days) if days is not None else None)
        return {"now": shopify_time(store.now())}
    if path == "/_standin/shops":
        shop = store.shop_put(
            domain=body.get("shop_domain", ""),
            token=body.get("access_token", ""),
            currency=body.get("currency", "USD"),
        )
        return {"shop_domain": shop.domain, "currency": shop.currency, "id": shop.number}
    if path == "/_standin/faults":
        store.fault_add(
            mode=body.get("mode", ""),
            count=int(body.get("count", 1)),
            operation=body.get("operation") or None,
            seconds=float(body.get("seconds", DEFAULT_TIMEOUT_FAULT_SECONDS)),
        )
        return {"faults": faults(store)}
    if match := re.fullmatch(r"/_standin/shops/([^/]+)/uninstall", path):
        store.uninstall(match.group(1))
        return {"ok": True}
    if match := re.fullmatch(r"/_standin/subscriptions/(\d+)/status", path):
        sub = store.status_set(int(match.group(1)), body.get("status", ""))
        return subscription_state(store, sub)
    if match := re.fullmatch(r"/_standin/subscriptions/(\d+)/cap", path):
        sub = store.cap_set(int(match.group(1)), decimal_of(body.get("amount"), "amount"))
        return subscription_state(store, sub)
    raise ControlError(404, f"No control route {method} {path}")


def faults(store: Store) -> list[dict]:
    return [
        {
            "mode": f.mode,
            "left": f.count,
            "operation": f.operation,
            "seconds": f.seconds,
            "fired": f.fired,
        }
        for f in store.faults
    ]


def subscription_state(store: Store, sub) -> dict:
    lines = []
    for line in sub.lines:
        entry: dict = {"id": line.gid, "index": line.index, "interval": line.interval}
        if line.is_usage:
            entry |= {
                "kind": "usage",
                "capped_amount": money_text(line.capped_amount),
                "balance_used": money_text(store.balance_used(sub, line)),
                "terms": line.terms,
                "pending_cap": None if line.pending_cap is None else money_text(line.pending_cap),
            }
        else:
            entry |= {"kind": "recurring", "price": money_text(line.recurring_price)}
        lines.append(entry)
    return {
        "id": sub.gid,
        "number": sub.number,
        "shop": sub.shop,
        "name": sub.name,
        "status": sub.status,
        "currency": sub.currency,
        "test": sub.test,
        "return_url": sub.return_url,
        "replacement_behavior": sub.replacement_behavior,
        "trial_days": sub.trial_days,
        "created_at": shopify_time(sub.created_at),
        "activated_at": shopify_time(sub.activated_at),
        "current_period_end": shopify_time(sub.current_period_end),
        "replaces": sub.replaces,
        "confirmation_url": store.confirmation_url(sub),
        "lines": lines,
    }


def snapshot(store: Store, sender: Sender) -> dict:
    """Everything the stand-in holds, for assertions."""
    return {
        "now": shopify_time(store.now()),
        "config": {"webhook_url": store.webhook_url, "api_secret": store.api_secret},
        "shops": [
            {
                "shop_domain": s.domain,
                "currency": s.currency,
                "id": s.number,
                "installed": s.installed,
            }
            for s in store.shops.values()
        ],
        "subscriptions": [subscription_state(store, s) for s in store.subscriptions.values()],
        "usage_records": [
            {
                "id": r.gid,
                "subscription": r.subscription_number,
                "shop": r.shop,
                "created_at": shopify_time(r.created_at),
                "description": r.description,
                "idempotency_key": r.idempotency_key,
                "price": money_text(r.price),
                "currency": r.currency,
            }
            for r in store.records.values()
        ],
        "faults": faults(store),
        "faults_fired": store.faults_fired,
        "webhooks": sender.snapshot(),
        "webhooks_idle": sender.idle(),
    }

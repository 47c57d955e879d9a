"""What every surface shows of a Shopify-channel account's billing: the merchant's "Paid through
Shopify" panel, the console's account page, the partner API and its webhooks read it here, so
no two say it differently. Shopify's own figures (status, cap, balance used, interval end) are
read from our mirror of its answers and webhooks (billing.models.ShopifySubscription); nothing
here asks Shopify."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone

from accounts.api_fields import money
from accounts.models import Account, ShopifyShop
from plans.periods import format_day

from . import shopify_usage
from .models import ShopifyStatus, ShopifySubscription, ShopifyUsageRecord, UsageRecordStatus

SHOPIFY_INTERVAL = timedelta(days=30)  # Shopify's EVERY_30_DAYS: the cap is per interval

# What each status means for the merchant and what they must do, in their words (decision 5).
STATUS_WORDS = {
    ShopifyStatus.PENDING: (
        "Waiting for your approval in Shopify",
        "Nothing is billed until you approve the subscription in Shopify.",
    ),
    ShopifyStatus.ACTIVE: (
        "Active",
        "Shopify bills your plan every 30 days and the usage charges within your approved cap, "
        "on your Shopify bill.",
    ),
    ShopifyStatus.DECLINED: (
        "Declined in Shopify",
        "The subscription was declined, so nothing can be billed: ask for it again and approve "
        "it in Shopify.",
    ),
    ShopifyStatus.EXPIRED: (
        "Expired: not approved within two days",
        "Shopify drops a subscription that is not approved within two days: ask for it again "
        "and approve it in Shopify.",
    ),
    ShopifyStatus.ACCEPTED: (
        "Approved: starts with the next 30-day cycle",
        "Shopify approved the change: it applies at the end of the current 30-day cycle.",
    ),
    ShopifyStatus.FROZEN: (
        "Frozen by Shopify",
        "Shopify has frozen the app subscription: pay your Shopify bill to resume. Nothing is "
        "switched off yet, and no card is charged.",
    ),
    ShopifyStatus.CANCELLED: (
        "Cancelled",
        "The app subscription was cancelled in Shopify: your subscription ends at the end of its "
        "billing cycle, as a cancellation would; the last period's usage is still billed.",
    ),
}
UNINSTALLED_WORDS = (
    "The app was uninstalled from your Shopify store: your subscription ends at the end of its "
    "billing cycle, as a cancellation would. Usage Shopify no longer accepts is held for our "
    "team, who will contact you."
)


@dataclass
class RecordRow:
    """One usage record of an invoice line, in the merchant's words."""

    amount_minor: int
    currency: str
    status: str
    words: str  # "Posted to Shopify", "Held over your approved cap", "Being sent to Shopify"
    shopify_id: str  # the number of Shopify's AppUsageRecord gid, "" until posted
    description: str


@dataclass
class ShopifyPanel:
    shop_domain: str
    currency: str
    uninstalled_at: datetime | None = None
    shown: ShopifySubscription | None = None  # the live one, else the newest
    pending: ShopifySubscription | None = None  # a request waiting for approval
    status: str = ""  # Shopify's status of `shown`, "" when none was ever asked for
    status_label: str = ""
    status_help: str = ""
    can_ask_again: bool = False  # the newest was declined or expired: a button asks again
    capped_minor: int = 0
    balance_used_minor: int = 0
    remaining_minor: int = 0
    used_percent: int = 0
    held_minor: int = 0
    interval_start: datetime | None = None
    interval_end: datetime | None = None
    cap_confirmation_url: str = ""
    cap_requested_minor: int | None = None
    approaching: bool = False  # Shopify said 90 % of the cap was used in this interval
    notes: list[str] = field(default_factory=list)


def shopify_number(gid: str) -> str:
    """gid://shopify/AppUsageRecord/123 → "123", the id Shopify shows; the gid when unusual."""
    tail = gid.rsplit("/", 1)[-1]
    return tail.split("?", 1)[0] if tail else gid


def shopify_panel(*, account: Account, now: datetime) -> ShopifyPanel | None:
    """The panel's figures for a Shopify-channel account; None for a card account."""
    if not account.pays_through_shopify:
        return None
    shop = ShopifyShop.objects.filter(account=account).first()
    panel = ShopifyPanel(
        shop_domain=shop.shop_domain if shop else "",
        currency=account.currency,
        uninstalled_at=shop.uninstalled_at if shop else None,
    )
    rows = list(
        ShopifySubscription.objects.filter(account=account).order_by("-created_at", "-pk")[:10]
    )
    live = next((r for r in rows if r.status in (ShopifyStatus.ACTIVE, ShopifyStatus.FROZEN)), None)
    newest = rows[0] if rows else None
    panel.shown = live or newest
    panel.held_minor = shopify_usage.held_minor(account)
    if newest is not None and newest.status == ShopifyStatus.PENDING and newest is not live:
        panel.pending = newest
    if panel.shown is None:
        return panel
    shown = panel.shown
    panel.status = shown.status
    panel.status_label, panel.status_help = STATUS_WORDS[ShopifyStatus(shown.status)]
    if panel.uninstalled_at is not None and live is None:
        panel.status_help = UNINSTALLED_WORDS
    # Asking again makes sense only when nothing bills: a declined change request beside a live
    # subscription leaves the live one as it was.
    panel.can_ask_again = (
        live is None
        and newest is not None
        and newest.status
        in (
            ShopifyStatus.DECLINED,
            ShopifyStatus.EXPIRED,
        )
    )
    declined_change = (
        live is not None
        and newest is not None
        and newest is not live
        and newest.status in (ShopifyStatus.DECLINED, ShopifyStatus.EXPIRED)
        and newest.created_at > (live.activated_at or live.created_at)
    )
    if live is not None and newest is not None and newest.status == ShopifyStatus.ACCEPTED:
        panel.notes.append(
            f"Approved in Shopify: {newest.name} from the next 30-day cycle"
            + (f" ({format_day(live.current_period_end)})." if live.current_period_end else ".")
        )
    if declined_change and newest is not None:
        panel.notes.append(
            f"Your change request ({newest.name}) was {newest.get_status_display()}: "
            "your subscription stays as it was."
        )
    panel.capped_minor = shown.capped_amount_minor
    panel.balance_used_minor = shown.balance_used_minor
    panel.remaining_minor = shown.remaining_minor
    if shown.capped_amount_minor:
        panel.used_percent = min(100, shown.balance_used_minor * 100 // shown.capped_amount_minor)
    if shown.current_period_end is not None:
        panel.interval_end = shown.current_period_end
        panel.interval_start = shown.current_period_end - SHOPIFY_INTERVAL
    panel.cap_confirmation_url = shown.cap_confirmation_url
    panel.cap_requested_minor = shown.cap_requested_minor
    # Shopify sends the 90 % webhook once per interval: it counts only in the interval under
    # way (an older one's warning says nothing about this interval's balance).
    # After a raise the balance is far from the new cap: the warning no longer applies.
    if shown.approaching_cap_at is not None and panel.interval_start is not None:
        panel.approaching = panel.used_percent >= 90 and (
            panel.interval_start <= shown.approaching_cap_at < (panel.interval_end or now)
        )
    return panel


_RECORD_WORDS = {
    UsageRecordStatus.POSTED: "Posted to Shopify",
    UsageRecordStatus.HELD: "Held over your approved cap",
    UsageRecordStatus.CREATED: "Being sent to Shopify",
    UsageRecordStatus.SENDING: "Being sent to Shopify",
    UsageRecordStatus.UNKNOWN: "Being sent to Shopify (checking Shopify's answer)",
    UsageRecordStatus.FAILED: "Refused by Shopify: our team is looking into it",
}


def record_words(status: str) -> str:
    """A usage record's status in the merchant's words."""
    return _RECORD_WORDS.get(UsageRecordStatus(status), status)


def invoice_records(*, account: Account, invoice_ids: list[int]) -> dict[int, list[RecordRow]]:
    """The usage records of these invoices of the account, by invoice, in line order."""
    by_invoice: dict[int, list[RecordRow]] = {}
    records = (
        ShopifyUsageRecord.objects.filter(invoice__account=account, invoice_id__in=invoice_ids)
        .select_related("line")
        .order_by("line__position", "part")
    )
    for record in records:
        by_invoice.setdefault(record.invoice_id, []).append(
            RecordRow(
                amount_minor=record.amount_minor,
                currency=record.currency,
                status=record.status,
                words=record_words(record.status),
                shopify_id=shopify_number(record.shopify_gid) if record.shopify_gid else "",
                description=record.description,
            )
        )
    return by_invoice


def api_figures(*, account: Account, now: datetime) -> dict | None:
    """The account's Shopify billing as the partner API and its webhooks carry it (money as
    the API's money objects, integer minor units); None for a card account."""
    panel = shopify_panel(account=account, now=now)
    if panel is None:
        return None
    shown, currency = panel.shown, panel.currency
    waiting = panel.pending or (shown if shown and shown.status == ShopifyStatus.PENDING else None)
    return {
        "shop_domain": panel.shop_domain,
        "status": panel.status or None,
        "capped_amount": money(panel.capped_minor, currency) if shown else None,
        "balance_used": money(panel.balance_used_minor, currency) if shown else None,
        "held_amount": money(panel.held_minor, currency),
        "currency": currency,
        "confirmation_url": (waiting.confirmation_url or None) if waiting else None,
        "cap_confirmation_url": panel.cap_confirmation_url or None,
        "current_period_end": panel.interval_end,
    }


def webhook_figures(account_id: int):
    """For partner webhooks that describe a subscription: a callable giving the account's
    Shopify figures as JSON values (None on the card channel), computed only when a partner
    endpoint listens (outbox evaluates it lazily, so nothing is read before)."""

    def figures() -> dict | None:
        account = Account.objects.get(pk=account_id)
        body = api_figures(account=account, now=timezone.now())
        if body is not None and body["current_period_end"] is not None:
            body["current_period_end"] = body["current_period_end"].isoformat()
        return body

    return figures

"""Our records against Shopify's (issue 24, item 5): per Shopify-channel account, what
currentAppInstallation → activeSubscriptions says (status, cap, balance used, interval end)
against our mirror and our subscription's period, and the usage records on Shopify's usage
lines against our posted ones, matched by idempotency key.

It reads and reports. It refreshes our mirror of Shopify's own figures (status, cap, balance,
interval end) and never posts, deletes or changes money: a usage record missing on either
side is for an operator to look at (lost answers are settled first by the usage path's own
reconcile, which asks Shopify about each)."""

from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Q
from django.utils import timezone

from accounts.models import Account, BillingChannel, ShopifyShop
from audit.services import audit_record
from plans.money import format_money

from . import shopify_gateway, shopify_usage
from .models import ShopifySubscription, ShopifyUsageRecord, UsageRecordStatus


@dataclass
class AccountReport:
    slug: str
    lines: list[str] = field(default_factory=list)
    money_differences: int = 0
    mirror_updates: int = 0

    def note(self, text: str, *, money: bool = False) -> None:
        self.lines.append(("MONEY  " if money else "       ") + text)
        self.money_differences += money


@dataclass
class ReconcileReport:
    accounts: list[AccountReport] = field(default_factory=list)
    settled: int = 0  # usage records whose lost answers the usage path settled first

    @property
    def money_differences(self) -> int:
        return sum(a.money_differences for a in self.accounts)


def shopify_reconcile(*, account: Account | None = None, as_of: datetime | None = None):
    """Compare every Shopify-channel account (or one) with what Shopify holds."""
    as_of = as_of or timezone.now()
    report = ReconcileReport(settled=shopify_usage.usage_records_reconcile(as_of=as_of))
    accounts = Account.objects.filter(billing_channel=BillingChannel.SHOPIFY).order_by("slug")
    if account is not None:
        accounts = accounts.filter(pk=account.pk)
    for one in accounts:
        report.accounts.append(_account(one, as_of))
    return report


def _account(account: Account, as_of: datetime) -> AccountReport:
    out = AccountReport(slug=account.slug)
    shop = ShopifyShop.objects.filter(account=account).first()
    if shop is None:
        out.note("no Shopify shop: nothing to compare")
        return out
    try:
        active = shopify_gateway.active_subscriptions(shop=shop)
    except shopify_gateway.ShopifyError as exc:
        out.note(f"Shopify could not be read: {exc}")
        return out
    rows = {r.gid: r for r in ShopifySubscription.objects.filter(account=account)}
    listed = set()
    lines: set[str] = set()
    for state in active:
        listed.add(state.gid)
        row = rows.get(state.gid)
        if row is None:
            out.note(f"Shopify bills {state.gid} ({state.name}, {state.status}): not ours")
            continue
        _mirror(row, state, out, as_of)
        if state.usage_line_gid:
            lines.add(state.usage_line_gid)
        ours = row.subscription
        end = ours.current_period_end if ours else None
        if ours is not None and ours.ended_at is None and state.current_period_end != end:
            out.note(
                f"{state.gid}: Shopify's interval ends {state.current_period_end:%Y-%m-%d %H:%M}, "
                f"our period {end:%Y-%m-%d %H:%M}"
            )
    for gid, row in rows.items():
        if row.status in ("ACTIVE", "FROZEN") and gid not in listed:
            out.note(f"{gid}: we have it {row.status}, Shopify does not list it as active")
        if row.usage_line_gid and (gid in listed or row.usage_records.exists()):
            lines.add(row.usage_line_gid)
    for line in sorted(lines):
        _records(shop, account, line, rows, out)
    if not out.lines:
        out.note("in agreement")
    return out


def _mirror(row: ShopifySubscription, state, out: AccountReport, as_of: datetime) -> None:
    """Shopify's own figures onto our mirror; what changed is said and audited."""
    figures = {
        "status": state.status,
        "capped_amount_minor": state.capped_minor,
        "balance_used_minor": state.balance_used_minor,
        "current_period_end": state.current_period_end,
    }
    changed = {k: v for k, v in figures.items() if getattr(row, k) != v and v is not None}
    if not changed:
        return
    before = {k: str(getattr(row, k)) for k in changed}
    ShopifySubscription.objects.filter(pk=row.pk).update(**changed, updated_at=as_of)
    audit_record(
        action="shopify.reconciled",
        obj=row,
        before=before,
        after={k: str(v) for k, v in changed.items()},
        reason="shopify_reconcile: Shopify's figures",
        at=as_of,
        label=row.gid,
    )
    out.mirror_updates += 1
    words = ", ".join(f"{k} {before[k]} → {changed[k]}" for k in changed)
    out.note(f"{row.gid}: mirror updated from Shopify: {words}")


def _records(shop, account, line: str, rows: dict, out: AccountReport) -> None:
    """Usage records on one usage line: Shopify's against our posted ones, by key."""
    try:
        theirs = {
            r.idempotency_key: r
            for r in shopify_gateway.usage_records(shop=shop, line_gid=line)
            if r.idempotency_key
        }
    except shopify_gateway.ShopifyError as exc:
        out.note(f"usage records of {line} could not be read: {exc}")
        return
    on_line = [r for r in rows.values() if r.usage_line_gid == line]
    ours = {
        r.idempotency_key: r
        for r in ShopifyUsageRecord.objects.filter(
            Q(shopify_subscription__in=on_line) | Q(idempotency_key__in=list(theirs))
        )
    }
    currency = account.currency
    for key, record in sorted(ours.items()):
        if record.status != UsageRecordStatus.POSTED:
            continue
        found = theirs.get(key)
        if found is None:
            out.note(
                f"{key}: posted here ({format_money(record.amount_minor, currency)}), "
                "missing at Shopify",
                money=True,
            )
        elif found.amount_minor != record.amount_minor:
            out.note(
                f"{key}: {format_money(record.amount_minor, currency)} here, "
                f"{format_money(found.amount_minor, found.currency)} at Shopify",
                money=True,
            )
    for key, found in sorted(theirs.items()):
        mine = ours.get(key)
        if mine is None or mine.status != UsageRecordStatus.POSTED:
            state = "not ours" if mine is None else f"ours is {mine.status}"
            out.note(
                f"{key}: at Shopify ({format_money(found.amount_minor, found.currency)}, "
                f"{found.gid}), {state}",
                money=True,
            )

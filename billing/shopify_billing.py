"""The Shopify channel's subscription lifecycle: asking Shopify for an app subscription, following
what Shopify says of it (approval, freeze, cancellation, uninstall), plan changes, the end of a
subscription, and moving an account from one channel to the other (docs/shopify.md).

Shopify is the source of truth for its own subscription: every status we keep was read from
Shopify (a query, or a webhook re-read by query) and applied by `shopify_sync`, the one function
that maps Shopify's statuses onto ours. Our Subscription starts only once Shopify says ACTIVE,
never because the merchant's browser came back to the return URL.
"""

import logging
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from accounts.errors import Conflict, DomainError, NotFound
from accounts.models import Account, BillingChannel, ShopifyShop
from accounts.validators import shop_domain_valid
from audit.services import audit_record
from metering import limits as metering_limits
from outbox import services as outbox
from plans import periods, pricing
from plans import services as plan_services
from plans.meters import meter_heading
from plans.models import AddOn, AddOnTier, Plan, Subscription
from plans.money import format_money, format_unit_price
from plans.terms import TermsBook, meter_terms_by_meter, subscription_terms

from . import changes, notifications, restart, shopify_figures, shopify_gateway
from .closing import start_invoice_issue
from .models import (
    SHOPIFY_LIVE,
    SHOPIFY_TERMINAL,
    Invoice,
    InvoiceKind,
    InvoiceStatus,
    ShopifyPlanCap,
    ShopifyStatus,
    ShopifySubscription,
    ShopifyUsageRecord,
    UsageRecordStatus,
)

logger = logging.getLogger(__name__)

USAGE_TERMS_MAX = 500  # Shopify's limit on appUsagePricingDetails.terms
FROZEN_REASON = "Shopify froze the app subscription (unpaid Shopify bill)"
ANNUAL_REFUSED = (
    "Annual billing is not available when you pay through Shopify: Shopify bills usage only on "
    "30-day cycles."
)
# Statuses in which Shopify still has (or will have) the subscription billing the shop.
_OPEN_AT_SHOPIFY = (*SHOPIFY_LIVE, ShopifyStatus.PENDING, ShopifyStatus.ACCEPTED)
_UNPAID = (InvoiceStatus.OPEN, InvoiceStatus.PAST_DUE, InvoiceStatus.REQUIRES_CONFIRMATION)


class ShopifyUnavailableError(DomainError):
    """Shopify did not answer: nothing changed on our side; try again shortly."""

    status = 503
    code = "shopify_unavailable"


def _refusal(exc: shopify_gateway.ShopifyError, *, doing: str) -> DomainError:
    """A Shopify error as a domain error a person can act on (never a token in it)."""
    if isinstance(exc, shopify_gateway.ShopifyAuthError):
        message = (
            "Shopify refused the app's access token for this shop: check the token, or "
            "install the app on the shop again."
        )
        return DomainError(
            message,
            code="shopify_token_refused",
            details={"fields": {"shopify.access_token": [message]}},
        )
    if isinstance(exc, shopify_gateway.ShopifyRefused):
        return Conflict(f"Shopify refused {doing}: {exc}", code="shopify_refused")
    return ShopifyUnavailableError(f"Shopify did not answer while {doing}; try again shortly.")


# --- reading --------------------------------------------------------------------------------


def live_shopify_subscription(account: Account) -> ShopifySubscription | None:
    """The app subscription Shopify bills the account through now (ACTIVE or FROZEN), newest."""
    return (
        ShopifySubscription.objects.filter(account=account, status__in=SHOPIFY_LIVE)
        .order_by("-created_at", "-pk")
        .first()
    )


def _shop(account: Account) -> ShopifyShop:
    shop = ShopifyShop.objects.filter(account=account).first()
    if shop is None:
        raise Conflict(f"Account '{account.slug}' has no Shopify shop.", code="no_shopify_shop")
    if shop.uninstalled_at is not None:
        raise Conflict(
            f"The app was uninstalled from {shop.shop_domain}: the merchant installs it again "
            "before a subscription can be approved.",
            code="shopify_uninstalled",
        )
    return shop


def return_url(account: Account) -> str:
    """Where Shopify sends the merchant back after the approval page (our page asks Shopify)."""
    path = reverse("billing:shopify-return", kwargs={"slug": account.slug})
    return f"{settings.SITE_URL}{path}"


def usage_cap_minor(*, account: Account, plan: Plan) -> int:
    """The usage cap per 30 days to ask for: the account's own, else the plan's, else the
    default ("$10,000 approved usage limit")."""
    shop = ShopifyShop.objects.filter(account=account).first()
    if shop is not None and shop.capped_amount_minor:
        return shop.capped_amount_minor
    plan_cap = ShopifyPlanCap.objects.filter(plan=plan, currency=account.currency).first()
    if plan_cap is not None:
        return plan_cap.capped_amount_minor
    return settings.SHOPIFY_DEFAULT_CAPPED_AMOUNT_MINOR


def usage_terms_words(terms: pricing.SubscriptionTerms) -> str:
    """The overage prices in a merchant's words, as Shopify shows them on the approval page:
    "Helpdesk tickets over 2,000 per 30 days: $40.00 per 100; ...". At most 500 characters:
    the meters are cut whole, never mid-sentence."""
    currency = terms.currency
    parts = []
    for meter, meter_terms in meter_terms_by_meter(terms).items():
        head = f"{meter_heading(meter)} over {meter_terms.included:,} per 30 days"
        if meter_terms.policy == "per_block" and meter_terms.block_price_minor is not None:
            price = format_money(meter_terms.block_price_minor, currency)
            parts.append(f"{head}: {price} per {meter_terms.block_size:,}")
        elif meter_terms.policy == "per_unit" and meter_terms.unit_price_minor is not None:
            parts.append(
                f"{head}: {format_unit_price(meter_terms.unit_price_minor, currency)} each"
            )
    if not parts:
        return "No usage charges on this plan."
    words = ""
    for part in parts:
        longer = f"{words}; {part}" if words else part
        if len(longer) + 1 > USAGE_TERMS_MAX:
            break
        words = longer
    return f"{words}."


def recurring_minor(terms: pricing.SubscriptionTerms) -> int:
    """The 30-day recurring price: the plan's monthly fee and the add-ons' (catalog prices in
    the account's currency, through the terms every invoice uses)."""
    plan_fee = terms.plan.fee_minor if terms.plan is not None else 0
    return plan_fee + sum(addon.fee_minor for addon in terms.addons)


def _name(plan: Plan, tiers: list[AddOnTier]) -> str:
    name = f"{plan.name} plan"
    if tiers:
        name += " with " + ", ".join(tier.name for tier in tiers)
    return name[:255]


@dataclass(frozen=True)
class _Ask:
    """What one appSubscriptionCreate asks for."""

    plan: Plan
    tiers: list[AddOnTier]
    terms: pricing.SubscriptionTerms

    @property
    def addons(self) -> dict[str, str]:
        return {tier.addon.code: tier.code for tier in self.tiers}


def _ask_new(account: Account, plan_code: str, addons: dict[str, str] | None) -> _Ask:
    offer = plan_services.resolve_offer(code=plan_code)
    plan_services.shopify_offer_check(offer=offer, interval=None)
    assert isinstance(offer, Plan)  # shopify_offer_check refuses editions
    tiers = plan_services.resolve_tiers(
        choices=[plan_services.AddOnChoice(a, t) for a, t in (addons or {}).items()]
    )
    draft = Subscription(account=account, plan=offer, interval=periods.DAYS_30)
    terms = TermsBook([account.pk]).subscription_terms(draft, [(t.addon, t) for t in tiers])
    return _Ask(plan=offer, tiers=tiers, terms=terms)


def _create(
    *,
    account: Account,
    ask: _Ask,
    kind: str,
    replaces: ShopifySubscription | None = None,
    replacement_behavior: str = "",
    request: changes.ChangeRequest | None = None,
    return_to: str | None = None,
) -> ShopifySubscription:
    """appSubscriptionCreate, then our row of it (PENDING, with its approval link)."""
    shop = _shop(account)
    cap = usage_cap_minor(account=account, plan=ask.plan)
    usage_terms = usage_terms_words(ask.terms)
    name = _name(ask.plan, ask.tiers)
    try:
        created = shopify_gateway.subscription_create(
            shop=shop,
            name=name,
            recurring_minor=recurring_minor(ask.terms),
            usage_cap_minor=cap,
            usage_terms=usage_terms,
            currency=account.currency,
            return_url=return_to or return_url(account),
            replacement_behavior=replacement_behavior or None,
            test=settings.SHOPIFY_TEST_CHARGES,
        )
    except shopify_gateway.ShopifyError as exc:
        raise _refusal(exc, doing="the app subscription") from exc
    state = created.state
    now = timezone.now()
    terms: dict = {"kind": kind, "plan": ask.plan.code, "addons": ask.addons}
    if request is not None:
        terms["request"] = {
            "plan": request.plan,
            "interval": request.interval,
            "addons": [list(pair) for pair in request.addons],
        }
    with transaction.atomic():
        row = ShopifySubscription.objects.create(
            account=account,
            replaces=replaces,
            gid=state.gid,
            name=state.name or name,
            status=state.status,
            replacement_behavior=replacement_behavior,
            terms=terms,
            currency=account.currency,
            recurring_line_gid=state.recurring_line_gid,
            recurring_amount_minor=state.recurring_minor or recurring_minor(ask.terms),
            usage_line_gid=state.usage_line_gid,
            usage_terms=state.terms or usage_terms,
            capped_amount_minor=state.capped_minor or cap,
            confirmation_url=created.confirmation_url,
            current_period_end=state.current_period_end,
            created_at=state.created_at or now,
            updated_at=now,
        )
        audit_record(
            action="shopify.subscription_requested",
            obj=row,
            after={**terms, "recurring_minor": row.recurring_amount_minor, "cap_minor": cap},
            reason=replacement_behavior or "new app subscription",
            label=row.gid,
        )
        notifications.send(
            "shopify_approval_needed",
            account,
            also=notifications.billing_managers(account),
            shopify_subscription=row,
            recurring=format_money(row.recurring_amount_minor, account.currency),
            cap=format_money(row.capped_amount_minor, account.currency),
        )
    return row


def _refuse_unless_shopify(account: Account) -> None:
    if account.billing_channel != BillingChannel.SHOPIFY:
        raise Conflict(
            "This account pays by card: it has no Shopify subscription.", code="not_shopify"
        )


# --- subscribing ----------------------------------------------------------------------------


def shopify_subscribe(
    *,
    account: Account,
    plan_code: str,
    addons: dict[str, str] | None = None,
    return_url: str | None = None,
) -> ShopifySubscription:
    """Ask Shopify for an app subscription on this plan (PENDING; the merchant approves it at
    its confirmation URL). Our subscription starts when Shopify says ACTIVE."""
    _refuse_unless_shopify(account)
    if Subscription.objects.filter(account=account, ended_at__isnull=True).exists():
        raise Conflict(
            "This account already has a live subscription: change its plan instead.",
            code="subscription_live",
        )
    return _create(
        account=account,
        ask=_ask_new(account, plan_code, addons),
        kind="start",
        return_to=return_url,
    )


def shopify_start_again(*, account: Account, plan_code: str | None) -> ShopifySubscription:
    """Start again after the end, through Shopify: refused as a start again by card is (a
    live subscription, a past-due invoice), then an app subscription to approve."""
    _refuse_unless_shopify(account)
    restart._refuse_if_live_or_past_due(account)
    return shopify_subscribe(account=account, plan_code=plan_code or "")


def shopify_change(*, account: Account, request: changes.ChangeRequest) -> ShopifySubscription:
    """A plan or add-on change through Shopify: a replacing app subscription, applied at once
    for an upgrade (APPLY_IMMEDIATELY; P6 without our proration invoice: Shopify prorates)
    or at the cycle's end for a downgrade (APPLY_ON_NEXT_BILLING_CYCLE; P7). Nothing changes
    on our side before the merchant approves it."""
    _refuse_unless_shopify(account)
    if request.interval == periods.YEAR:
        raise DomainError(
            ANNUAL_REFUSED,
            code="shopify_no_annual",
            details={"fields": {"interval": [ANNUAL_REFUSED]}},
        )
    live = live_shopify_subscription(account)
    subscription = Subscription.objects.filter(account=account, ended_at__isnull=True).first()
    if live is None or subscription is None:
        raise NotFound(f"Account '{account.slug}' has no live Shopify subscription to change.")
    preview = changes.subscription_change_preview(account=account, request=request)
    if preview.kind == "none":
        raise Conflict(
            "The request changes nothing: the subscription is already on these terms.",
            code="no_change",
        )
    plan = changes.plan_for_sale(request.plan) if request.plan else subscription.plan
    assert plan is not None  # editions are refused by the preview
    chosen = {item.addon: item.tier for item in subscription.addons.select_related("addon", "tier")}
    for code, tier_code in request.addons:
        addon = AddOn.objects.get(code=code)  # the preview resolved every code
        if tier_code is None:
            chosen.pop(addon, None)
        else:
            chosen[addon] = AddOnTier.objects.get(addon=addon, code=tier_code)
    terms = subscription_terms(
        subscription,
        plan=plan,
        tiers={a: chosen.get(a) for a in {*chosen, *_current(subscription)}},
    )
    ask = _Ask(plan=plan, tiers=sorted(chosen.values(), key=lambda t: t.addon.code), terms=terms)
    behavior = "APPLY_IMMEDIATELY" if preview.kind == "upgrade" else "APPLY_ON_NEXT_BILLING_CYCLE"
    return _create(
        account=account,
        ask=ask,
        kind=preview.kind,
        replaces=live,
        replacement_behavior=behavior,
        request=request,
    )


def _current(subscription: Subscription) -> list[AddOn]:
    return [item.addon for item in subscription.addons.select_related("addon")]


def shopify_return(*, account: Account, charge_id: str | None) -> ShopifySubscription | None:
    """The merchant is back from Shopify's approval page: ask Shopify what it says now and
    apply it. The redirect itself proves nothing (anyone can open the URL)."""
    rows = ShopifySubscription.objects.filter(account=account)
    row = None
    if charge_id and charge_id.isdigit():
        row = rows.filter(gid=f"gid://shopify/AppSubscription/{charge_id}").first()
    if row is None:
        row = rows.filter(status=ShopifyStatus.PENDING).order_by("-created_at", "-pk").first()
    if row is None:
        return None
    return shopify_refresh(shopify_subscription=row)


def shopify_refresh(*, shopify_subscription: ShopifySubscription) -> ShopifySubscription:
    """Read one app subscription from Shopify and apply what it says."""
    shop = _shop(shopify_subscription.account)
    try:
        state = shopify_gateway.subscription_get(shop=shop, gid=shopify_subscription.gid)
    except shopify_gateway.ShopifyError as exc:
        raise _refusal(exc, doing="reading the app subscription") from exc
    return shopify_sync(shopify_subscription=shopify_subscription, state=state, at=timezone.now())


# --- applying what Shopify says -------------------------------------------------------------


def shopify_sync(
    *,
    shopify_subscription: ShopifySubscription,
    state: shopify_gateway.SubscriptionState,
    at: datetime,
) -> ShopifySubscription:
    """Apply Shopify's truth about one app subscription: its status mapped onto ours
    (docs/shopify.md, decision 5), its cap, balance and interval end mirrored. Safe to call
    again with the same state: each step is claimed once."""
    with transaction.atomic():
        row = (
            ShopifySubscription.objects.select_for_update()
            .select_related("account")
            .get(pk=shopify_subscription.pk)
        )
        before_status, before_cap = row.status, row.capped_amount_minor
        status = state.status if state.status in ShopifyStatus.values else row.status
        row.status = status
        row.name = state.name or row.name
        if state.usage_line_gid:
            row.usage_line_gid = state.usage_line_gid
            row.capped_amount_minor = state.capped_minor
            row.balance_used_minor = state.balance_used_minor
            row.usage_terms = state.terms or row.usage_terms
        if state.recurring_line_gid:
            row.recurring_line_gid = state.recurring_line_gid
            row.recurring_amount_minor = state.recurring_minor
        if state.current_period_end is not None:
            row.current_period_end = state.current_period_end
        if status in SHOPIFY_LIVE and row.activated_at is None and row.current_period_end:
            # Shopify's interval is 30 days ending at currentPeriodEnd: it started 30 days before.
            row.activated_at = row.current_period_end - periods.THIRTY_DAYS
        if status in SHOPIFY_TERMINAL and row.ended_at is None:
            row.ended_at = at
        if row.cap_requested_minor and row.capped_amount_minor >= row.cap_requested_minor:
            row.cap_requested_minor, row.cap_confirmation_url = None, ""
        row.updated_at = at
        row.save()
        if status != before_status:
            audit_record(
                action="shopify.subscription_status",
                obj=row,
                before=before_status,
                after=status,
                reason=ShopifyStatus(status).label,
                at=at,
                label=row.gid,
            )
        if row.capped_amount_minor != before_cap and before_cap:
            audit_record(
                action="shopify.cap_changed",
                obj=row,
                before=before_cap,
                after=row.capped_amount_minor,
                at=at,
                label=row.gid,
            )
        channel_is_shopify = row.account.billing_channel == BillingChannel.SHOPIFY
        if channel_is_shopify and status != before_status:
            _status_effects(row, before_status, at)
        cap_raised = row.capped_amount_minor > before_cap and before_cap > 0
    if channel_is_shopify and status in (ShopifyStatus.ACTIVE, ShopifyStatus.ACCEPTED):
        _apply_approved(row, at)
    if channel_is_shopify and cap_raised:
        _post_held(row.account_id, at)
    row.refresh_from_db()
    return row


def _our_live(account_id: int) -> Subscription | None:
    return Subscription.objects.filter(account_id=account_id, ended_at__isnull=True).first()


def _status_effects(row: ShopifySubscription, before: str, at: datetime) -> None:
    """What a status change means on our side (inside the row's transaction)."""
    account = row.account
    ours = row.subscription or (_our_live(row.account_id) if row.status != "PENDING" else None)
    if row.status == ShopifyStatus.FROZEN and ours is not None:
        plan_services.subscription_transition(
            subscription_id=ours.pk, to=Subscription.Status.PAST_DUE, reason=FROZEN_REASON, at=at
        )
        notifications.send(
            "shopify_frozen",
            account,
            also=notifications.billing_managers(account),
            shopify_subscription=row,
        )
    elif row.status == ShopifyStatus.ACTIVE and before == ShopifyStatus.FROZEN and ours:
        # Back to active only what the freeze made past due: an unpaid invoice of ours keeps
        # its own state (there is none on this channel, but the rule is the freeze's).
        if ours.status == Subscription.Status.PAST_DUE:
            plan_services.subscription_transition(
                subscription_id=ours.pk,
                to=Subscription.Status.ACTIVE,
                reason="Shopify re-activated the app subscription",
                at=at,
            )
    elif row.status == ShopifyStatus.DECLINED and before == ShopifyStatus.PENDING:
        notifications.send(
            "shopify_declined",
            account,
            also=notifications.billing_managers(account),
            shopify_subscription=row,
        )
    elif row.status == ShopifyStatus.CANCELLED and before in SHOPIFY_LIVE:
        if not _replaced(row, at):
            _end_ours(account, reason="Shopify cancelled the app subscription", at=at)


def _replaced(row: ShopifySubscription, at: datetime) -> bool:
    """Whether Shopify cancelled this one because a newer one replaced it (the merchant
    approved a change): nothing ends then. A replacement we still think PENDING is read
    from Shopify first: its webhook may come after this one's."""
    for newer in ShopifySubscription.objects.filter(replaces=row).exclude(
        status__in=SHOPIFY_TERMINAL
    ):
        if newer.status == ShopifyStatus.PENDING:
            try:
                state = shopify_gateway.subscription_get(shop=_shop(row.account), gid=newer.gid)
            except (shopify_gateway.ShopifyError, Conflict):
                logger.warning("replacement %s of %s could not be read", newer.gid, row.gid)
                continue
            if state.status in (ShopifyStatus.ACTIVE, ShopifyStatus.ACCEPTED):
                return True
            continue
        return True
    return False


def _end_ours(account: Account, *, reason: str, at: datetime) -> None:
    """Shopify no longer bills the account: our subscription ends at the end of its cycle, as
    a cancellation would (its last period is closed and invoiced as usual)."""
    ours = _our_live(account.pk)
    if ours is None:
        return
    change, new = changes.subscription_cancel_at_period_end(account=account)
    if new:
        audit_record(
            action="shopify.subscription_ended",
            obj=ours,
            after=change.as_audit(),
            reason=reason,
            at=at,
        )


def _apply_approved(row: ShopifySubscription, at: datetime) -> None:
    """The merchant approved it at Shopify: start our subscription (a new one), or record the
    change it carries (a replacement). Claimed by linking our subscription to the row, so a
    webhook and the return page arriving together apply it once."""
    kind = row.terms.get("kind", "start")
    if kind == "start":
        if row.status != ShopifyStatus.ACTIVE:
            return
        _start_ours(row, at)
        return
    ours = _our_live(row.account_id)
    if ours is None:
        return
    claimed = ShopifySubscription.objects.filter(pk=row.pk, subscription__isnull=True).update(
        subscription=ours
    )
    if not claimed:
        return
    request = row.terms.get("request") or {}
    change = changes.ChangeRequest(
        plan=request.get("plan"),
        interval=request.get("interval"),
        addons=tuple((code, tier) for code, tier in request.get("addons", [])),
    )
    try:
        # An upgrade applies now without our proration invoice (Shopify prorates the
        # replacement); a downgrade is scheduled for the cycle's end (P7).
        changes.subscription_change(account=row.account, request=change, at=at, prorate=False)
    except Conflict as exc:
        if exc.code != "no_change":
            ShopifySubscription.objects.filter(pk=row.pk).update(subscription=None)
            raise
    except Exception:
        ShopifySubscription.objects.filter(pk=row.pk).update(subscription=None)
        raise


def _start_ours(row: ShopifySubscription, at: datetime) -> None:
    """Our 30-day subscription, anchored where Shopify's interval starts (so our periods are
    Shopify's intervals), with its first invoice (P1: the fee Shopify's recurring charge
    bills; collection marks it billed through Shopify)."""
    with transaction.atomic():
        row = ShopifySubscription.objects.select_for_update().get(pk=row.pk)
        if row.subscription_id is not None:
            return
        account = Account.objects.select_for_update().get(pk=row.account_id)
        if _our_live(account.pk) is not None:
            logger.warning("%s is active but %s already has a live subscription", row.gid, account)
            return
        anchor = row.activated_at or at
        plan = Plan.objects.get(code=row.terms["plan"])
        tiers = plan_services.resolve_tiers(
            choices=[
                plan_services.AddOnChoice(a, t) for a, t in row.terms.get("addons", {}).items()
            ]
        )
        had_one = Subscription.objects.filter(account=account).exists()
        created = plan_services.subscription_create(
            account=account,
            offer=plan,
            interval=periods.DAYS_30,
            tiers=tiers,
            now=anchor,
            reason=f"approved at Shopify ({row.gid})",
        )
        subscription = Subscription.objects.select_related("account", "plan", "edition").get(
            pk=created.pk
        )
        row.subscription = subscription
        row.save(update_fields=["subscription"])
        start_invoice_issue(subscription=subscription, as_of=max(at, anchor))
        if had_one:  # started again: what the end of the last one switched off comes back
            metering_limits.entitlements_restore(account_id=account.pk, at=at)
            outbox.subscription_changed_emit(
                subscription,
                effective="now",
                shopify=shopify_figures.webhook_figures(subscription.account_id),
            )


def _post_held(account_id: int, at: datetime) -> None:
    """The cap went up: post what was held for it (the usage money path's own step)."""
    from . import shopify_usage  # the usage path; imported here as it imports this module

    shopify_usage.held_post(account_id=account_id, at=at)


def shopify_uninstalled(*, shop_domain: str, at: datetime) -> ShopifyShop | None:
    """The merchant uninstalled the app: Shopify cancelled its subscriptions and revoked the
    token. Ours ends at the end of its cycle, as a cancel would. None for a shop we do not
    know (logged by the caller)."""
    shop = ShopifyShop.objects.select_related("account").filter(shop_domain=shop_domain).first()
    if shop is None:
        return None
    with transaction.atomic():
        if shop.uninstalled_at is None:
            ShopifyShop.objects.filter(pk=shop.pk).update(uninstalled_at=at)
            shop.uninstalled_at = at
            audit_record(
                action="shopify.uninstalled",
                obj=shop.account,
                after=shop.shop_domain,
                at=at,
                label=shop.shop_domain,
            )
        for row in ShopifySubscription.objects.select_for_update().filter(
            account=shop.account, status__in=_OPEN_AT_SHOPIFY
        ):
            audit_record(
                action="shopify.subscription_status",
                obj=row,
                before=row.status,
                after=ShopifyStatus.CANCELLED,
                reason="the app was uninstalled",
                at=at,
                label=row.gid,
            )
            row.status, row.ended_at, row.updated_at = ShopifyStatus.CANCELLED, at, at
            row.save(update_fields=["status", "ended_at", "updated_at"])
        if shop.account.billing_channel == BillingChannel.SHOPIFY:
            _end_ours(shop.account, reason="the app was uninstalled from Shopify", at=at)
    return shop


# --- the end at Shopify -----------------------------------------------------------------------


def shopify_ended_cancel(*, as_of: datetime | None = None) -> int:
    """A step of run_billing: once our subscription has ended and its final invoice is settled
    (or its usage held for an operator), Shopify stops billing it (appSubscriptionCancel).
    Returns how many were cancelled at Shopify."""
    as_of = as_of or timezone.now()
    done = 0
    rows = ShopifySubscription.objects.select_related("account", "subscription").filter(
        status__in=SHOPIFY_LIVE,
        subscription__ended_at__isnull=False,
        subscription__ended_at__lte=as_of,
        account__billing_channel=BillingChannel.SHOPIFY,
    )
    for row in rows:
        assert row.subscription is not None  # filtered on its end
        final = (
            Invoice.objects.filter(subscription=row.subscription, kind=InvoiceKind.INVOICE)
            .order_by("-issued_at", "-pk")
            .first()
        )
        held = ShopifyUsageRecord.objects.filter(
            invoice=final, status=UsageRecordStatus.HELD
        ).exists()
        if final is not None and final.status != InvoiceStatus.PAID and not held:
            continue  # its usage is still being posted to this subscription
        try:
            state = shopify_gateway.subscription_cancel(shop=_shop(row.account), gid=row.gid)
        except (shopify_gateway.ShopifyError, Conflict) as exc:
            logger.warning("could not cancel %s at Shopify: %s", row.gid, exc)
            continue
        shopify_sync(shopify_subscription=row, state=state, at=as_of)
        done += 1
    return done


# --- changing channel -----------------------------------------------------------------------


def account_channel_change(
    *,
    account: Account,
    to: str,
    reason: str,
    shop_domain: str | None = None,
    access_token: str | None = None,
) -> Account:
    """An operator moves an account to the other channel, only when none of its invoices is
    unpaid. To Stripe: Shopify stops billing (its app subscription is cancelled) and the next
    charge needs a card (the card_required path asks for one). To Shopify: the account needs
    its shop, and no card subscription may be live (its paid cycle would be billed twice)."""
    if to not in BillingChannel.values:
        raise DomainError(f"A channel is one of {', '.join(BillingChannel.values)}.")
    if not reason.strip():
        raise DomainError("Say why the channel changes (--reason): it is kept in the audit log.")
    if account.billing_channel == to:
        raise Conflict(f"Account '{account.slug}' already pays through {to}.", code="no_change")
    unpaid = list(
        Invoice.objects.filter(account=account, status__in=_UNPAID).order_by("issued_at", "pk")
    )
    if unpaid:
        numbers = [i.number or f"draft {i.pk}" for i in unpaid]
        raise Conflict(
            f"Settle the unpaid invoices first: {', '.join(numbers)}.",
            code="outstanding_invoices",
            details={"invoices": numbers},
        )
    live_shopify = live_shopify_subscription(account)
    if to == BillingChannel.SHOPIFY and _our_live(account.pk) is not None:
        raise Conflict(
            "The card subscription is live: cancel it at the end of its cycle and move the "
            "account once it has ended (Shopify bills a new 30-day subscription from approval, "
            "so the paid card cycle would be billed twice).",
            code="subscription_live",
        )
    before = account.billing_channel
    with transaction.atomic():
        account = Account.objects.select_for_update().get(pk=account.pk)
        if to == BillingChannel.SHOPIFY:
            _shop_set(account, shop_domain=shop_domain, access_token=access_token)
        account.billing_channel = to
        account.save(update_fields=["billing_channel"])
        audit_record(
            action="account.billing_channel",
            obj=account,
            account_id=account.pk,
            before=before,
            after=to,
            reason=reason.strip(),
            label=account.slug,
        )
    if to == BillingChannel.STRIPE and live_shopify is not None:
        # Shopify must stop billing once we do; the channel is already card, so the
        # cancellation it reports ends nothing of ours.
        try:
            state = shopify_gateway.subscription_cancel(shop=_shop(account), gid=live_shopify.gid)
        except (shopify_gateway.ShopifyError, Conflict) as exc:
            logger.warning("could not cancel %s at Shopify: %s", live_shopify.gid, exc)
        else:
            shopify_sync(shopify_subscription=live_shopify, state=state, at=timezone.now())
    return account


def _shop_set(account: Account, *, shop_domain: str | None, access_token: str | None) -> None:
    shop = ShopifyShop.objects.filter(account=account).first()
    if shop is None and not (shop_domain and access_token):
        raise DomainError("Moving to Shopify needs the shop's domain and the app's access token.")
    if shop_domain:
        try:
            domain = shop_domain_valid(shop_domain)
        except ValidationError as exc:
            raise DomainError(exc.messages[0], details={"field": "shop_domain"}) from None
        if ShopifyShop.objects.filter(shop_domain=domain).filter(~Q(account=account)).exists():
            raise Conflict(f"The shop '{domain}' already pays for another account.")
        shop = shop or ShopifyShop(account=account, installed_at=timezone.now())
        shop.shop_domain = domain
    assert shop is not None
    if access_token:
        shop.set_access_token(access_token.strip())
    shop.uninstalled_at = None
    shop.save()

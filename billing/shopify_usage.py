"""Collecting on the Shopify channel: an invoice's usage lines posted as Shopify usage records.

This is the card channel's one collection path (billing.payments) for a shop that pays through
Shopify (docs/shopify.md): fees are billed by the app subscription's recurring charge, so what
we collect is the invoice's usage (lines of kind `overage` and `late_usage`), each line one
ShopifyUsageRecord (more parts when the approved cap cuts it). Moving money goes as a charge
does: the record and its idempotency key (from our own invoice, line and part) are committed
first; one caller claims it `created → sending` by a conditional update and only that caller
calls Shopify; a lost answer leaves it `unknown` until `usage_records_reconcile` asks Shopify
(and re-sends with the same key, which Shopify answers with its first record, never a second
charge); every state change is audited.

The cap (P8 on this channel): before posting, Shopify's balance and cap for the interval are
read; a record that does not fit is split while it has never been sent: the part that fits is
posted, the rest is a `held` part, the invoice is held with the reason in words, the billing
managers are emailed, and a higher cap is asked for. `held_post` posts held parts once the cap
is raised (or Shopify's 30-day interval rolled over). Usage is never dropped.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, F, Max, OuterRef, Q, Sum
from django.db.models.functions import Greatest
from django.utils import timezone

from accounts.errors import Conflict
from accounts.models import Account, ShopifyShop
from audit.services import audit_record
from plans.money import currency_exponent, format_money
from plans.periods import format_period

from . import invoicing, notifications, shopify_gateway
from .models import (
    UNPAID,
    Dunning,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    ShopifyStatus,
    ShopifySubscription,
    ShopifyUsageRecord,
    UsageRecordStatus,
)

logger = logging.getLogger(__name__)

R = UsageRecordStatus
# The invoice lines Shopify bills as usage records; every other kind (plan and add-on fees,
# proration, credits) is billed, or prorated, by the app subscription's recurring charge.
POSTABLE_KINDS = ("overage", "late_usage")
PAID_REASON = "billed through Shopify"
# Records claimed and waiting for Shopify's answer: a collector leaves their invoice alone.
IN_FLIGHT = (R.SENDING, R.UNKNOWN)
# A record claimed this long ago without an answer is settled by asking Shopify: longer than a
# call can take (SHOPIFY_TIMEOUT_SECONDS, no retries in the adapter), so the lost request has
# surely finished at Shopify when we look for it.
IN_FLIGHT_TIMEOUT = timedelta(minutes=5)
# A cap raise asked for this recently is offered again rather than asked anew (Shopify lets an
# unapproved request lapse, as it does a pending subscription, after two days).
CAP_REQUEST_FRESH = timedelta(days=2)
# Two collectors of one shop can both read room that only one of them gets: the other's record
# is refused over the cap and re-read; after this many refusals in a row it is held for now.
CAP_REREADS = 3
# A held part's `error` when the cap is what holds it (else it names what else does).
OVER_CAP = "over the approved usage cap"


@dataclass(frozen=True)
class ShopifyPosting:
    """What one collection of an invoice on the Shopify channel came to."""

    invoice_id: int
    status: str  # the invoice's status afterwards
    posted: int  # usage records Shopify accepted in this call
    held_minor: int  # what is held over the cap (or for want of a live subscription)


# --- collecting an invoice ---------------------------------------------------------------------


def invoice_post(
    *, invoice_id: int, at: datetime | None = None, retry_failed: bool = False
) -> ShopifyPosting | None:
    """Collect an invoice of a Shopify-channel account by posting its usage lines; None when
    there is nothing to collect. `retry_failed` (a person's Retry) sends again what Shopify
    refused and what was held, so a cap raised in Shopify's own settings is picked up."""
    at = at or timezone.now()
    with transaction.atomic():
        invoice = (
            Invoice.objects.select_for_update(of=("self",))
            .select_related("account")
            .get(pk=invoice_id)
        )
        if invoice.status not in UNPAID or invoice.kind != InvoiceKind.INVOICE:
            return None  # re-checked unpaid under the lock, as the card path does
        if invoicing.amount_due(invoice) <= 0:  # credit notes cover it
            invoicing.invoice_settle(invoice=invoice, reason="fully credited", at=at)
            return None
        _records_ensure(invoice, at)
        if retry_failed:
            for record in invoice.usage_records.filter(status__in=(R.FAILED, R.HELD)):
                _move(record, record.status, R.CREATED, at=at, reason="sent again on request")
    # The records are committed with their keys before anything is sent (a crash from here on
    # leaves rows the sweep or reconcile finishes, never a call we cannot account for).
    return _collect(invoice_id, at)


def _collect(invoice_id: int, at: datetime) -> ShopifyPosting:
    posted = sum(_post(record, at) for record in _unsent(invoice_id))
    return _settle(invoice_id, at, posted)


def _records_ensure(invoice: Invoice, at: datetime) -> None:
    """Part 1 of every postable line that has no record yet (under the invoice's lock)."""
    lines = invoice.lines.filter(kind__in=POSTABLE_KINDS, amount_minor__gt=0).exclude(
        Exists(ShopifyUsageRecord.objects.filter(line=OuterRef("pk")))
    )
    for line in lines:
        record = ShopifyUsageRecord.objects.create(
            invoice=invoice,
            line=line,
            part=1,
            idempotency_key=_key(invoice, line, 1),
            amount_minor=line.amount_minor,
            currency=invoice.currency,
            description=_description(line, 1),
            status=R.CREATED,
            created_at=at,
        )
        _audit(record, before=None, after=R.CREATED, at=at, reason="usage to post to Shopify")


def _key(invoice: Invoice, line: InvoiceLine, part: int) -> str:
    """From our own rows, so a re-send of the same part always carries the same key."""
    return f"usage:{invoice.number}:line:{line.pk}:part:{part}"[
        : shopify_gateway.IDEMPOTENCY_KEY_MAX
    ]


def _description(line: InvoiceLine, part: int) -> str:
    """The merchant reads this on Shopify's invoice: the line's own words, naming its period."""
    text = line.description
    period = format_period(line.period_start, line.period_end, month_by_name=True)
    if period not in text:
        text = f"{text}, {period}"
    suffix = f" (part {part})" if part > 1 else ""
    return text[: 255 - len(suffix)] + suffix


def _unsent(invoice_id: int) -> list[ShopifyUsageRecord]:
    return list(
        ShopifyUsageRecord.objects.filter(invoice_id=invoice_id, status=R.CREATED)
        .select_related("invoice__account", "line")
        .order_by("line__position", "part")
    )


# --- posting one record ------------------------------------------------------------------------


def live_subscription(account_id: int) -> ShopifySubscription | None:
    """The app subscription usage is posted to: the newest one Shopify says is ACTIVE."""
    return (
        ShopifySubscription.objects.filter(account_id=account_id, status=ShopifyStatus.ACTIVE)
        .order_by(F("activated_at").desc(nulls_last=True), "-pk")
        .first()
    )


def _post(record: ShopifyUsageRecord, at: datetime) -> int:
    """Post one `created` record if it fits under the cap (1 when Shopify took it)."""
    account = record.invoice.account
    subscription = live_subscription(account.pk)
    shop = ShopifyShop.objects.filter(account_id=account.pk).first()
    if subscription is None or shop is None or not subscription.usage_line_gid:
        _move(record, R.CREATED, R.HELD, at=at, error=_no_live_words(account))
        return 0
    for _ in range(CAP_REREADS):
        try:
            state = shopify_gateway.subscription_get(shop=shop, gid=subscription.gid)
        except shopify_gateway.ShopifyError as exc:
            # Nothing was sent: the record stays `created` and the next sweep posts it.
            logger.warning("usage record %s not posted: %s", record.idempotency_key, exc)
            return 0
        _mirror(subscription, state)
        if state.status != ShopifyStatus.ACTIVE:
            words = f"Shopify says the app subscription is {state.status.lower()}"
            _move(record, R.CREATED, R.HELD, at=at, error=words)
            return 0
        remaining = max(0, state.capped_minor - state.balance_used_minor)
        record.refresh_from_db()
        if record.status != R.CREATED:
            return 0  # another collector has it
        if record.amount_minor > remaining:
            # Only a record Shopify surely holds nothing for may change its amount: one whose
            # answer was lost may be at Shopify under its key, so it waits whole for room.
            if remaining == 0 or record.sending_at is not None:
                _move(record, R.CREATED, R.HELD, at=at, error=OVER_CAP)
                return 0
            split = _split(record, fits=remaining, at=at)
            if split is None:
                return 0
            record = split
        if not _claim(record, subscription):
            return 0
        try:
            created = shopify_gateway.usage_record_create(
                shop=shop,
                line_gid=subscription.usage_line_gid,
                amount_minor=record.amount_minor,
                currency=record.currency,
                description=record.description,
                idempotency_key=record.idempotency_key,
            )
        except shopify_gateway.ShopifyCapExceeded as exc:
            # A definite answer: Shopify recorded nothing under the key, so the record may be
            # cut to what fits after a fresh read (someone else took the room meanwhile).
            _move(record, R.SENDING, R.CREATED, at=at, error=str(exc), sending_at=None)
            record.refresh_from_db()
            continue
        except shopify_gateway.ShopifyUnavailable as exc:
            _move(record, R.SENDING, R.UNKNOWN, at=at, error=str(exc))
            return 0
        except shopify_gateway.ShopifyError as exc:  # refused for another reason, or the token
            _move(record, R.SENDING, R.FAILED, at=at, error=str(exc), sending_at=None)
            return 0
        _posted(record, created.gid, at, reason="Shopify accepted it")
        # Shopify's figure read before the post, plus this record: an absolute value, so a
        # 90 % webhook that set the balance meanwhile is not counted twice (never lowered here:
        # another collector may have posted after our read).
        ShopifySubscription.objects.filter(pk=subscription.pk).update(
            balance_used_minor=Greatest(
                F("balance_used_minor"), state.balance_used_minor + record.amount_minor
            )
        )
        return 1
    _move(record, R.CREATED, R.HELD, at=at, error=OVER_CAP)
    return 0


def _claim(record: ShopifyUsageRecord, subscription: ShopifySubscription) -> bool:
    """created → sending, by one caller only (the row count says who won)."""
    return bool(
        ShopifyUsageRecord.objects.filter(pk=record.pk, status=R.CREATED).update(
            status=R.SENDING, sending_at=timezone.now(), shopify_subscription=subscription
        )
    )


def _split(record: ShopifyUsageRecord, *, fits: int, at: datetime) -> ShopifyUsageRecord | None:
    """Cut a never-sent record to what fits; the rest becomes the line's next part, held."""
    with transaction.atomic():
        # The line's lock numbers its parts; NO KEY so that inserting parts (a key share on
        # the line) elsewhere is not blocked by it.
        InvoiceLine.objects.select_for_update(no_key=True).get(pk=record.line_id)
        locked = (
            ShopifyUsageRecord.objects.select_for_update(no_key=True)
            .select_related("invoice__account", "line")
            .get(pk=record.pk)
        )
        if locked.status != R.CREATED or locked.sending_at is not None:
            return None
        if locked.amount_minor <= fits:
            return locked
        rest = locked.amount_minor - fits
        part = (
            ShopifyUsageRecord.objects.filter(line_id=locked.line_id).aggregate(n=Max("part"))["n"]
            + 1
        )
        held = ShopifyUsageRecord.objects.create(
            invoice=locked.invoice,
            line=locked.line,
            part=part,
            idempotency_key=_key(locked.invoice, locked.line, part),
            amount_minor=rest,
            currency=locked.currency,
            description=_description(locked.line, part),
            status=R.HELD,
            error=OVER_CAP,
            created_at=at,
        )
        audit_record(
            action="usage_record.split",
            obj=locked,
            before=locked.amount_minor,
            after=fits,
            reason=f"the approved cap leaves room for {_money(fits, locked.currency)}",
            at=at,
            account_id=locked.invoice.account_id,
            label=locked.idempotency_key,
        )
        _audit(held, before=None, after=R.HELD, at=at, reason=OVER_CAP)
        locked.amount_minor = fits
        locked.save(update_fields=["amount_minor"])
    return locked


def _move(
    record: ShopifyUsageRecord,
    before: str,
    after: str,
    *,
    at: datetime,
    error: str = "",
    reason: str = "",
    **fields,
) -> bool:
    """One state change of a record, conditional on the state the caller saw, audited."""
    with transaction.atomic():
        changes = {"status": after, "error": error[:300], **fields}
        moved = ShopifyUsageRecord.objects.filter(pk=record.pk, status=before).update(**changes)
        if moved:
            _audit(record, before=before, after=after, at=at, reason=reason or error)
    return bool(moved)


def _posted(record: ShopifyUsageRecord, gid: str, at: datetime, *, reason: str) -> bool:
    """sending → posted: Shopify has it. Never moves again."""
    return _move(record, R.SENDING, R.POSTED, at=at, reason=reason, shopify_gid=gid, posted_at=at)


def _audit(
    record: ShopifyUsageRecord, *, before: str | None, after: str, at: datetime, reason: str
) -> None:
    audit_record(
        action="usage_record.status",
        obj=record,
        before=before,
        after=after,
        reason=reason,
        at=at,
        account_id=record.invoice.account_id,
        label=record.idempotency_key,
    )


def _mirror(subscription: ShopifySubscription, state: shopify_gateway.SubscriptionState) -> None:
    """Keep Shopify's figures on our row (pages read them); a requested cap that is now in
    force is no longer waiting."""
    changes: dict[str, object] = {
        "capped_amount_minor": state.capped_minor,
        "balance_used_minor": state.balance_used_minor,
        "current_period_end": state.current_period_end or subscription.current_period_end,
        "updated_at": timezone.now(),
    }
    requested = subscription.cap_requested_minor
    if requested is not None and state.capped_minor >= requested:
        changes.update(cap_requested_minor=None, cap_confirmation_url="", cap_requested_at=None)
    ShopifySubscription.objects.filter(pk=subscription.pk).update(**changes)
    for name, value in changes.items():
        setattr(subscription, name, value)


# --- what the invoice becomes --------------------------------------------------------------


def _settle(invoice_id: int, at: datetime, posted: int) -> ShopifyPosting:
    """Paid once every postable part is posted; held (P8) while any part is held or refused;
    left as it is while a part waits for Shopify's answer."""
    with transaction.atomic():
        invoice = (
            Invoice.objects.select_for_update(of=("self",))
            .select_related("account")
            .get(pk=invoice_id)
        )
        records = list(invoice.usage_records.all())
        held_parts = [r for r in records if r.status == R.HELD]
        held = sum(r.amount_minor for r in held_parts)
        failed = [r for r in records if r.status == R.FAILED]
        waiting = any(r.status in (R.CREATED, *IN_FLIGHT) for r in records)
        kind, began = "", False
        if invoice.status in UNPAID:
            if held_parts or failed:
                kind, began = _hold(invoice, held_parts, failed, at)
            else:
                _hold_clear(invoice, at)
                if not waiting:
                    invoicing.invoice_settle(invoice=invoice, reason=PAID_REASON, at=at)
    if kind == "cap":
        _cap_hold_notify(invoice, held, at, began=began)
    elif kind == "other" and began:
        reason = Dunning.objects.get(invoice=invoice).held_reason
        notifications.send(
            "shopify_usage_held",
            invoice.account,
            also=notifications.billing_managers(invoice.account),
            invoice=invoice,
            reason=reason,
            held=_money(held, invoice.currency),
        )
    return ShopifyPosting(invoice_id, invoice.status, posted, held)


def _hold(
    invoice: Invoice,
    held_parts: list[ShopifyUsageRecord],
    failed: list[ShopifyUsageRecord],
    at: datetime,
) -> tuple[str, bool]:
    """Hold the invoice with the reason in words; returns the hold's kind ("cap" or "other")
    and whether it began now (it was not held, or held for another kind of reason)."""
    account = invoice.account
    subscription = live_subscription(account.pk)
    held = sum(r.amount_minor for r in held_parts)
    other = next((r.error for r in held_parts if r.error != OVER_CAP), "")
    if held and subscription is not None and not other:
        kind = "cap"
        cap = _money(subscription.capped_amount_minor, invoice.currency)
        reason = (
            f"{_money(held, invoice.currency)} of usage is held: it is over the usage cap of "
            f"{cap} approved in Shopify for this 30-day cycle. Approve a higher cap (the link"
            " is on your Billing & Usage page and in our email)."
        )
    elif held:
        kind = "other"
        reason = (
            f"{_money(held, invoice.currency)} of usage is held: "
            f"{other or _no_live_words(account)}. It is posted once the subscription is active."
        )
    else:
        kind = "other"
        amount = _money(sum(r.amount_minor for r in failed), invoice.currency)
        reason = f"Shopify refused {amount} of usage ({failed[0].error}). An operator looks."
    reason = reason[:200]
    dunning, _ = Dunning.objects.get_or_create(invoice=invoice)
    if dunning.held_reason == reason:
        return kind, False
    before = dunning.held_reason
    dunning.held_reason = reason
    dunning.held_at = dunning.held_at if before else at
    dunning.next_retry_at = None
    dunning.save(update_fields=["held_reason", "held_at", "next_retry_at"])
    audit_record(
        action="invoice.held",
        obj=invoice,
        before=before or None,
        after="held",
        reason=reason,
        at=at,
        account_id=invoice.account_id,
        label=invoice.number or "",
    )
    logger.warning("invoice %s held: %s", invoice.number, reason)
    return kind, not (before and _hold_kind(before) == kind)


def _hold_kind(reason: str) -> str:
    return "cap" if "usage cap" in reason else "other"


def _hold_clear(invoice: Invoice, at: datetime) -> None:
    """Nothing is held or refused any more: the invoice goes back to collection."""
    dunning = Dunning.objects.filter(invoice=invoice).exclude(held_reason="").first()
    if dunning is None:
        return
    before = dunning.held_reason
    dunning.held_reason, dunning.held_at = "", None
    dunning.save(update_fields=["held_reason", "held_at"])
    audit_record(
        action="invoice.hold_cleared",
        obj=invoice,
        before=before,
        after="open",
        reason="the held usage went to Shopify",
        at=at,
        account_id=invoice.account_id,
        label=invoice.number or "",
    )


def _no_live_words(account: Account) -> str:
    """Why usage cannot be posted when there is no ACTIVE app subscription, in words."""
    if not ShopifyShop.objects.filter(account_id=account.pk, uninstalled_at__isnull=True).exists():
        return "the app is not installed on a Shopify store"
    newest = (
        ShopifySubscription.objects.filter(account_id=account.pk)
        .order_by("-created_at", "-pk")
        .first()
    )
    if newest is None or newest.status == ShopifyStatus.PENDING:
        return "the Shopify app subscription is not approved yet"
    if newest.status == ShopifyStatus.FROZEN:
        return "Shopify froze the app subscription (an unpaid Shopify bill)"
    return f"the Shopify app subscription is {newest.get_status_display()}"


def _money(amount_minor: int, currency: str) -> str:
    return format_money(int(amount_minor), currency)


# --- the cap ---------------------------------------------------------------------------------


def held_minor(account: Account) -> int:
    """What is held now (over the cap, or for want of a live subscription), for pages, the
    console and the API."""
    return (
        ShopifyUsageRecord.objects.filter(invoice__account=account, status=R.HELD).aggregate(
            total=Sum("amount_minor")
        )["total"]
        or 0
    )


def cap_raise_request(*, account: Account, capped_minor: int | None = None) -> str:
    """Ask Shopify for a higher usage cap (appSubscriptionLineItemUpdate) and email the
    merchant the approval link; returns it. By default: room for what is held on top of the
    current cap, rounded up to a whole 1,000 of the currency."""
    url, asked = _cap_request(account, capped_minor, timezone.now())
    if asked:
        notifications.send(
            "shopify_cap_reached",
            account,
            also=notifications.billing_managers(account),
            url=url,
            held=_money(held_minor(account), account.currency),
            reason="",
        )
    return url


def _cap_request(account: Account, capped_minor: int | None, at: datetime) -> tuple[str, bool]:
    """The approval URL of a cap raise, and whether it was asked for now (else a recent
    request that covers it is offered again)."""
    subscription = live_subscription(account.pk)
    shop = ShopifyShop.objects.filter(account_id=account.pk).first()
    if subscription is None or shop is None or not subscription.usage_line_gid:
        raise Conflict(
            "There is no active Shopify app subscription to raise the cap of.",
            code="no_shopify_subscription",
        )
    current = subscription.capped_amount_minor
    if capped_minor is None:
        step = 1000 * 10 ** currency_exponent(subscription.currency)
        wanted = current + max(held_minor(account), 1)
        capped_minor = -(-wanted // step) * step  # up to the next whole 1,000
    if capped_minor <= current:
        raise Conflict(
            f"The cap is already {_money(current, subscription.currency)}.", code="cap_not_higher"
        )
    pending = subscription.cap_requested_minor
    if (
        pending is not None
        and pending >= capped_minor
        and subscription.cap_confirmation_url
        and subscription.cap_requested_at is not None
        and timezone.now() - subscription.cap_requested_at < CAP_REQUEST_FRESH
    ):
        return subscription.cap_confirmation_url, False
    url = shopify_gateway.cap_update(
        shop=shop,
        line_gid=subscription.usage_line_gid,
        capped_minor=capped_minor,
        currency=subscription.currency,
    )
    with transaction.atomic():
        ShopifySubscription.objects.filter(pk=subscription.pk).update(
            cap_requested_minor=capped_minor,
            cap_confirmation_url=url,
            cap_requested_at=timezone.now(),
            updated_at=timezone.now(),
        )
        audit_record(
            action="shopify_subscription.cap_requested",
            obj=subscription,
            before=current,
            after=capped_minor,
            reason="usage is held over the approved cap",
            at=at,
            account_id=account.pk,
            label=subscription.gid,
        )
    return url, True


def _cap_hold_notify(invoice: Invoice, held: int, at: datetime, *, began: bool) -> None:
    """Usage is held over the cap: make sure a raise that covers all that is held is asked
    for, and email the managers its link when the hold begins or a new raise is asked for."""
    account = invoice.account
    try:
        url, asked = _cap_request(account, None, at)
    except (shopify_gateway.ShopifyError, Conflict) as exc:
        # The hold stands and shows on the page; the page's button asks again.
        logger.warning("cap raise for %s not requested: %s", account.slug, exc)
        url, asked = "", False
    if not (began or asked):
        return
    reason = Dunning.objects.filter(invoice=invoice).values_list("held_reason", flat=True).first()
    notifications.send(
        "shopify_cap_reached",
        account,
        also=notifications.billing_managers(account),
        invoice=invoice,
        url=url,
        held=_money(held, invoice.currency),
        reason=reason or "",
    )


def held_post(*, account_id: int, at: datetime | None = None) -> int:
    """Post what is held (after a cap raise, or once the subscription is active again),
    oldest invoice first, splitting again what still does not fit; returns how many records
    Shopify took."""
    at = at or timezone.now()
    held = (
        ShopifyUsageRecord.objects.filter(
            invoice__account_id=account_id, invoice__status__in=UNPAID, status=R.HELD
        )
        .select_related("invoice")
        .order_by("invoice__issued_at", "invoice_id", "line__position", "part")
    )
    invoice_ids: list[int] = []
    for record in held:
        moved = _move(record, R.HELD, R.CREATED, at=at, reason="posted after the cap was raised")
        if moved and record.invoice_id not in invoice_ids:
            invoice_ids.append(record.invoice_id)
    return sum(_collect(invoice_id, at).posted for invoice_id in invoice_ids)


# --- answers that were lost ---------------------------------------------------------------


def usage_records_reconcile(*, as_of: datetime) -> int:
    """Settle records left without an answer by asking Shopify; post what waits for room that
    Shopify now has. Returns how many records were found posted.

    Staleness is judged by the wall clock (a claim's time is the wall clock's), never by
    `as_of`, as for card attempts. A stale record is re-claimed by a conditional update on its
    old claim, so two sweepers never both settle it; found at Shopify by its key → posted; not
    there → `created` again and sent with the same key (and whole: its amount never changes)."""
    now = timezone.now()
    stale = ShopifyUsageRecord.objects.filter(
        status__in=IN_FLIGHT, sending_at__lte=now - IN_FLIGHT_TIMEOUT
    ).select_related("invoice__account", "shopify_subscription")
    found_posted = 0
    invoice_ids: list[int] = []
    listings: dict[str, dict[str, shopify_gateway.UsageRecord]] = {}
    for record in stale:
        if not ShopifyUsageRecord.objects.filter(
            pk=record.pk, status=record.status, sending_at=record.sending_at
        ).update(status=R.SENDING, sending_at=now):
            continue
        try:
            known = _listing(record, listings)
        except shopify_gateway.ShopifyError as exc:
            _move(record, R.SENDING, R.UNKNOWN, at=as_of, error=str(exc))
            continue
        if record.idempotency_key in known:
            found_posted += _posted(
                record, known[record.idempotency_key].gid, as_of, reason="found at Shopify"
            )
        else:
            _move(
                record,
                R.SENDING,
                R.CREATED,
                at=as_of,
                reason="not at Shopify: sent again with the same key",
            )
        if record.invoice_id not in invoice_ids:
            invoice_ids.append(record.invoice_id)
    for invoice_id in invoice_ids:
        _collect(invoice_id, as_of)
    for account_id in _held_with_room(now):
        held_post(account_id=account_id, at=as_of)
    return found_posted


def _listing(
    record: ShopifyUsageRecord, listings: dict[str, dict[str, shopify_gateway.UsageRecord]]
) -> dict[str, shopify_gateway.UsageRecord]:
    """Shopify's records on the record's usage line, by idempotency key (once per sweep)."""
    subscription = record.shopify_subscription or live_subscription(record.invoice.account_id)
    if subscription is None or not subscription.usage_line_gid:
        return {}
    line_gid = subscription.usage_line_gid
    if line_gid not in listings:
        shop = ShopifyShop.objects.get(account_id=record.invoice.account_id)
        listings[line_gid] = {
            r.idempotency_key: r
            for r in shopify_gateway.usage_records(shop=shop, line_gid=line_gid)
        }
    return listings[line_gid]


def _held_with_room(now: datetime) -> list[int]:
    """Accounts with held usage whose ACTIVE subscription has room as last seen, or whose
    Shopify interval rolled over since (balanceUsed starts again from zero)."""
    has_held = Exists(
        ShopifyUsageRecord.objects.filter(
            invoice__account_id=OuterRef("account_id"),
            invoice__status__in=UNPAID,
            status=R.HELD,
        )
    )
    return list(
        ShopifySubscription.objects.filter(status=ShopifyStatus.ACTIVE)
        .filter(Q(capped_amount_minor__gt=F("balance_used_minor")) | Q(current_period_end__lte=now))
        .filter(has_held)
        .values_list("account_id", flat=True)
        .distinct()
    )

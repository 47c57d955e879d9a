"""Write paths of partner webhooks: endpoints, the outbox (one bulk write per batch), replays.

The `*_emit` helpers at the bottom are what billing, plans and metering call: one line at each
place a change happens, inside that change's transaction.
"""

import secrets
import string
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.api_fields import money
from accounts.errors import Conflict, DomainError
from accounts.models import Account, Partner
from audit.services import audit_record

from .models import AccountSequence, Delivery, Endpoint, Event, EventType
from .public_only import host_refusal

_ALPHABET = string.ascii_letters + string.digits
# A partner may register a few endpoints (staging, production...), not an unbounded number.
MAX_ENDPOINTS = 10


def public_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def _url_check(url: str) -> None:
    parts = urlsplit(url)
    allowed = ("https", "http") if settings.WEBHOOK_ALLOW_HTTP else ("https",)
    if parts.scheme not in allowed or not parts.hostname:
        raise DomainError(
            "The endpoint URL must be https://" + (" or http://" if "http" in allowed else ""),
            code="invalid",
            details={"fields": {"url": ["Use an https:// URL."]}},
        )
    refusal = None if settings.WEBHOOK_ALLOW_PRIVATE else host_refusal(parts.hostname)
    if refusal:
        raise DomainError(
            f"Webhooks go to public addresses only: {refusal}.",
            code="invalid",
            details={"fields": {"url": ["Use a public host name or address."]}},
        )


def endpoint_create(*, partner: Partner, url: str, description: str = "") -> tuple[Endpoint, str]:
    """Register an endpoint; returns it with its signing secret (shown to the partner once)."""
    _url_check(url)
    with transaction.atomic():
        Partner.objects.select_for_update().filter(pk=partner.pk).first()
        if Endpoint.objects.filter(partner=partner, deleted_at__isnull=True).count() >= (
            MAX_ENDPOINTS
        ):
            raise Conflict(
                f"A partner has at most {MAX_ENDPOINTS} endpoints; delete one first.",
                code="too_many_endpoints",
            )
        secret = "whsec_" + secrets.token_urlsafe(32)
        endpoint = Endpoint.objects.create(
            public_id=public_id("we_"),
            partner=partner,
            url=url,
            description=description,
            secret=secret,
        )
        audit_record(
            action="webhook_endpoint.created", obj=endpoint, after=url, label=endpoint.public_id
        )
    return endpoint, secret


@transaction.atomic
def endpoint_delete(*, endpoint: Endpoint) -> Endpoint:
    """Stop sending to it; what it had not received yet is canceled, its log stays."""
    now = timezone.now()
    if not Endpoint.objects.filter(pk=endpoint.pk, deleted_at__isnull=True).update(deleted_at=now):
        endpoint.refresh_from_db()
        return endpoint  # deleted already: nothing changes, nothing to record
    canceled = Delivery.objects.filter(endpoint=endpoint, status=Delivery.Status.PENDING).update(
        status=Delivery.Status.CANCELED, next_attempt_at=None
    )
    endpoint.refresh_from_db()
    audit_record(
        action="webhook_endpoint.deleted",
        obj=endpoint,
        before=endpoint.url,
        reason=f"{canceled} pending deliveries canceled" if canceled else "",
        at=now,
        label=endpoint.public_id,
    )
    return endpoint


def delivery_replay(*, delivery: Delivery) -> Delivery:
    """Send an event again to the same endpoint now, as a new delivery in the log."""
    if delivery.endpoint.deleted_at is not None:
        raise Conflict("This endpoint was deleted: register it again to receive events.")
    now = timezone.now()
    with transaction.atomic():
        replay = Delivery.objects.create(
            public_id=public_id("wd_"),
            event_id=delivery.event_id,
            endpoint_id=delivery.endpoint_id,
            account_id=delivery.account_id,
            sequence=delivery.sequence,
            replay_of=delivery,
            next_attempt_at=now,
            created_at=now,
        )
        audit_record(
            action="webhook_delivery.replayed",
            obj=replay,
            before=delivery.public_id,
            at=now,
            label=replay.public_id,
        )
        _send_soon({delivery.endpoint_id})
    return replay


@dataclass(frozen=True)
class Pending:
    account_id: int
    type: str
    # A dict, or a function returning it: called only when an endpoint listens, so building
    # the payload costs nothing (no query) for the accounts of partners without endpoints.
    data: dict | Callable[[], dict]


def outbox_emit(*, account_id: int, type: str, data: dict | Callable[[], dict]) -> int:
    return outbox_emit_many(events=[Pending(account_id=account_id, type=type, data=data)])


def outbox_emit_many(*, events: Iterable[Pending], at: datetime | None = None) -> int:
    """Write events and their deliveries in the caller's transaction: a few statements for a
    whole batch (closing issues ~1,000 invoices a second), and nothing at all for accounts
    whose partner has no endpoint. Returns the number of events written."""
    events = list(events)
    if not events:
        return 0
    account_ids = {e.account_id for e in events}
    # One query: which live endpoints listen to which of these accounts.
    routes = list(
        Endpoint.objects.filter(
            deleted_at__isnull=True, partner__accounts__pk__any=list(account_ids)
        ).values_list("pk", "partner__accounts__pk", "partner__accounts__slug")
    )
    if not routes:
        return 0
    listeners: dict[int, list[int]] = {}
    slugs: dict[int, str] = {}
    for endpoint_id, account_id, slug in routes:
        listeners.setdefault(account_id, []).append(endpoint_id)
        slugs[account_id] = slug
    kept = [e for e in events if e.account_id in listeners]
    at = at or timezone.now()
    with transaction.atomic():
        last = _sequences_take(Counter(e.account_id for e in kept))
        rows = []
        for e in reversed(kept):  # numbered from the last one given, backwards
            rows.append(
                Event(
                    public_id=public_id("evt_"),
                    account_id=e.account_id,
                    sequence=last[e.account_id],
                    type=e.type,
                    data={
                        "account": slugs[e.account_id],
                        **(e.data() if callable(e.data) else e.data),
                    },
                    created_at=at,
                )
            )
            last[e.account_id] -= 1
        rows.reverse()
        Event.objects.bulk_create(rows, batch_size=1000)
        Delivery.objects.bulk_create(
            [
                Delivery(
                    public_id=public_id("wd_"),
                    event=event,
                    endpoint_id=endpoint_id,
                    account_id=event.account_id,
                    sequence=event.sequence,
                    next_attempt_at=at,
                    created_at=at,
                )
                for event in rows
                for endpoint_id in listeners[event.account_id]
            ],
            batch_size=1000,
        )
        _send_soon({endpoint_id for ids in listeners.values() for endpoint_id in ids})
    return len(rows)


def _sequences_take(counts: Counter) -> dict[int, int]:
    """Reserve `counts[account]` numbers per account in one upsert; returns each account's
    last reserved number. Rows are touched in account order, so two batches never deadlock;
    each stays locked to the end of the caller's transaction, so numbers follow commit order."""
    table = AccountSequence._meta.db_table
    items = sorted(counts.items())
    values = ", ".join(["(%s, %s)"] * len(items))
    params = [v for item in items for v in item]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (account_id, last) VALUES {values} "  # noqa: S608 (own names)
            f"ON CONFLICT (account_id) DO UPDATE SET last = {table}.last + EXCLUDED.last "
            "RETURNING account_id, last",
            params,
        )
        return dict(cursor.fetchall())


def _send_soon(endpoint_ids: set[int]) -> None:
    from . import tasks  # tasks import this module

    for endpoint_id in sorted(endpoint_ids):
        transaction.on_commit(partial(tasks.enqueue_delivery, endpoint_id))


# --- what the billing services call (one line each) -------------------------------------------


def invoice_tax_data(invoice) -> dict:
    """An issued invoice's tax as the partner API and the webhooks both say it, from what was
    frozen at issue (docs/tax.md). Credit notes carry negative amounts; an invoice issued
    before tax has treatment "" and no rates, its subtotal being what it charged."""
    currency = invoice.currency
    return {
        "subtotal": money(invoice.subtotal_minor, currency),
        "tax": [
            {
                "rate": row["rate"],  # a decimal string in percent: "20", "6.5"
                "label": row["label"],
                "taxable_amount": money(row["taxable_minor"], currency),
                "tax_amount": money(row["tax_minor"], currency),
            }
            for row in invoice.tax_rates
        ],
        "tax_total": money(invoice.tax_minor, currency),
        "tax_treatment": invoice.tax_treatment,
        "tax_mentions": list(invoice.tax_decision.get("mentions", ())),
        "vat_id_unconfirmed": invoice.vat_id_unconfirmed,
        "vat_in_eur": _vat_national(invoice.tax_decision.get("vat_national")),
    }


def _vat_national(data: dict | None) -> dict | None:
    """The VAT in the seller's national currency frozen at issue (Article 230; docs/tax.md),
    None when the document states none; `exchange_rate` None: no rate was known at issue."""
    if not data:
        return None
    currency = data["currency"]
    rate = data["rate"]
    return {
        "tax_total": money(data["tax_minor"], currency),
        "tax": [
            {"label": row["label"], "tax_amount": money(row["tax_minor"], currency)}
            for row in data["per_rate"]
        ],
        "exchange_rate": None
        if rate is None
        else {
            "source": "ECB",
            "currency": rate["currency"],
            "units_per_eur": rate["units_per_eur"],
            "published_on": rate["published_on"],
        },
    }


def _invoice_data(invoice) -> dict:
    return {
        "invoice": {
            "id": invoice.pk,
            "number": invoice.number,
            "kind": invoice.kind,
            "status": invoice.status,
            "reason": invoice.reason,
            **invoice_tax_data(invoice),
            "total": money(invoice.total_minor, invoice.currency),
            "period": {
                "start": invoice.period_start.isoformat(),
                "end": invoice.period_end.isoformat(),
            },
        }
    }


def _built_once(build: Callable[[Any], dict], arg: Any) -> Callable[[], dict]:
    """`build(arg)` on the first call, the same dict after (functools.cache made a wrapper
    per invoice that cost more than the rest of this loop)."""
    built: list[dict] = []

    def data() -> dict:
        if not built:
            built.append(build(arg))
        return built[0]

    return data


def invoices_issued_emit(invoices) -> int:
    """A batch of invoices and credit notes was issued (invoice 0 → also paid at once)."""
    events = []
    for invoice in invoices:
        # Built only for accounts an endpoint listens to (once, for both events of a paid one).
        data = _built_once(_invoice_data, invoice)
        if invoice.kind == "credit_note":
            events.append(Pending(invoice.account_id, EventType.CREDIT_NOTE_ISSUED, data))
            continue
        events.append(Pending(invoice.account_id, EventType.INVOICE_FINALIZED, data))
        if invoice.status == "paid":
            events.append(Pending(invoice.account_id, EventType.INVOICE_PAID, data))
    return outbox_emit_many(events=events)


_INVOICE_STATUS_EVENTS = {
    "paid": EventType.INVOICE_PAID,
    "past_due": EventType.INVOICE_PAYMENT_FAILED,
    "requires_confirmation": EventType.INVOICE_REQUIRES_CONFIRMATION,
}


def invoice_status_emit(invoice) -> int:
    """An invoice moved to a status partners are told about (credit notes are not invoices)."""
    kind = _INVOICE_STATUS_EVENTS.get(invoice.status)
    if kind is None or invoice.kind == "credit_note":
        return 0
    return outbox_emit(account_id=invoice.account_id, type=kind, data=_invoice_data(invoice))


def invoice_refund_emit(invoice, *, refund) -> int:
    """A refund of one of the invoice's credit notes reached the card (`invoice.refunded`), or
    did not (`invoice.refund_failed`: Stripe refused it or the bank returned it; its amount is
    the account's credit now)."""
    failed = refund.status in ("failed", "canceled")
    kind = EventType.INVOICE_REFUND_FAILED if failed else EventType.INVOICE_REFUNDED
    return outbox_emit(
        account_id=invoice.account_id,
        type=kind,
        data=lambda: {
            **_invoice_data(invoice),
            "refund": {
                "id": refund.pk,
                "credit_note": refund.credit_note.number,
                "amount": money(refund.amount_minor, refund.currency),
                "status": refund.status,
                "failure_reason": refund.failure_reason or None,
            },
        },
    )


def invoice_dispute_emit(invoice, *, dispute, opened: bool) -> int:
    """A card dispute of one of the invoice's charges was opened, or closed (won or lost)."""
    kind = EventType.INVOICE_DISPUTE_OPENED if opened else EventType.INVOICE_DISPUTE_CLOSED
    due = dispute.evidence_due_by
    data = {
        **_invoice_data(invoice),
        "dispute": {
            "id": dispute.stripe_dispute_id,
            "status": dispute.status,
            "reason": dispute.reason,
            "amount": money(dispute.amount_minor, dispute.currency),
            "fee": money(dispute.fee_minor, dispute.currency),
            "evidence_due_by": due.isoformat() if due else None,
            # Stripe's closed statuses but `lost` leave nothing owed: won for the account.
            "outcome": None if dispute.is_open else ("lost" if dispute.status == "lost" else "won"),
        },
    }
    return outbox_emit(account_id=invoice.account_id, type=kind, data=data)


def usage_dispute_emit(dispute, *, created: bool) -> int:
    """A merchant contested a billed ticket (`usage_dispute.created`), or it was decided
    (`usage_dispute.resolved`: accepted or rejected, with what it did to the money)."""
    kind = EventType.USAGE_DISPUTE_CREATED if created else EventType.USAGE_DISPUTE_RESOLVED
    note = dispute.credit_note
    currency = dispute.account.currency
    data = {
        "id": dispute.pk,
        "ticket": dispute.ticket,
        "reason": dispute.reason,
        "comment": dispute.comment,
        "status": dispute.status,
        "outcome": dispute.outcome or None,
        "decision": dispute.decision,
        "decided_by": dispute.decided_by,
        "credited": money(dispute.credited_minor, currency),
        "credit_note": note.number if note else None,
        "created_at": dispute.created_at.isoformat(),
        "resolved_at": dispute.resolved_at.isoformat() if dispute.resolved_at else None,
    }
    return outbox_emit(account_id=dispute.account_id, type=kind, data=data)


# Shopify's figures of an account (billing.shopify_figures.webhook_figures), for the payloads
# that describe a subscription: billing sits above this app and passes them in, lazily, so an
# account without endpoints never computes them.
ShopifyFigures = Callable[[], dict | None] | None


def _channel(account_id: int) -> str:
    return (
        Account.objects.filter(pk=account_id).values_list("billing_channel", flat=True).first()
        or ""
    )


def subscription_changed_emit(
    subscription, *, effective: str, shopify: ShopifyFigures = None
) -> int:
    """The plan, interval or add-ons changed, now (P6) or at the cycle's end (P7)."""
    return outbox_emit(
        account_id=subscription.account_id,
        type=EventType.SUBSCRIPTION_CHANGED,
        data=lambda: {
            "subscription": {
                "plan": subscription.plan.code if subscription.plan_id else None,
                "interval": subscription.interval,
                "status": subscription.status,
                "addons": sorted(
                    f"{a.addon.code}:{a.tier.code}"
                    for a in subscription.addons.select_related("addon", "tier")
                ),
                "billing_channel": _channel(subscription.account_id),
            },
            "effective": effective,
            "shopify": shopify() if shopify else None,
        },
    )


def subscription_status_emit(
    *, account_id: int, was: str, now: str, reason: str, shopify: ShopifyFigures = None
) -> int:
    """Suspended (F4), active again after a suspension, or ended (canceled at its cycle's end)."""
    if now == "suspended":
        kind = EventType.SUBSCRIPTION_SUSPENDED
    elif was == "suspended" and now == "active":
        kind = EventType.SUBSCRIPTION_REACTIVATED
    elif now == "canceled":
        kind = EventType.SUBSCRIPTION_ENDED
    else:
        return 0
    return outbox_emit(
        account_id=account_id,
        type=kind,
        data=lambda: {
            "subscription": {"status": now, "billing_channel": _channel(account_id)},
            "reason": reason,
            "shopify": shopify() if shopify else None,
        },
    )


def threshold_reached_emit(*, account_id: int, meter: str, used: int, included: int, threshold):
    return outbox_emit(
        account_id=account_id,
        type=EventType.USAGE_THRESHOLD_REACHED,
        data={"meter": meter, "used": used, "included": included, "threshold_percent": threshold},
    )


def entitlements_resumed_emit(resumed: list[tuple[int, str]]) -> int:
    """Pauses that ended with their period: (account id, feature) pairs."""
    return outbox_emit_many(
        events=[
            Pending(
                account_id, EventType.ENTITLEMENT_CHANGED, _entitlement(feature, "active", None)
            )
            for account_id, feature in resumed
        ]
    )


def _entitlement(feature: str, state: str, until) -> dict:
    return {"feature": feature, "state": state, "until": until.isoformat() if until else None}


def entitlement_changed_emit(*, account_id: int, feature: str, state: str, until) -> int:
    return outbox_emit(
        account_id=account_id,
        type=EventType.ENTITLEMENT_CHANGED,
        data=_entitlement(feature, state, until),
    )

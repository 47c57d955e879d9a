"""The ledger against Stripe: every difference between our payment attempts and invoices and
Stripe's PaymentIntents and refunds over a date range (`manage.py reconcile_stripe`).

Attempts and intents are matched by the intent id we recorded, else by our idempotency key in
the intent's metadata (an answer that was lost has no id yet). A difference is never fixed
here: what the sweeper can settle it settles (`payments.attempts_reconcile`), the rest is for an
operator, who sees these same differences.
"""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q

from . import gateway
from .models import InvoiceStatus, InvoiceStatusChange, PaymentAttempt, Refund

A = PaymentAttempt.Status
# Attempts that say Stripe has an intent for them.
SENT = (A.SUCCEEDED, A.REQUIRES_ACTION)
IN_FLIGHT = (A.CREATED, A.SENDING, A.UNKNOWN)


@dataclass(frozen=True)
class Difference:
    kind: str  # missing_locally | missing_at_stripe | amount_differs | status_differs |
    # charged_twice | unsettled | refund_not_in_ledger
    invoice: str = ""
    attempt: str = ""  # our idempotency key
    payment_intent: str = ""
    ours: str = ""
    stripe: str = ""

    def __str__(self) -> str:
        where = " ".join(
            f"{label} {value}"
            for label, value in (
                ("invoice", self.invoice),
                ("attempt", self.attempt),
                ("intent", self.payment_intent),
            )
            if value
        )
        return f"{self.kind}: {where}: ours {self.ours or '-'}; Stripe {self.stripe or '-'}"


def _attempts_in_range(since: datetime, until: datetime):
    """Attempts made in the range, and every attempt of invoices paid in it."""
    paid = InvoiceStatusChange.objects.filter(
        to_status=InvoiceStatus.PAID, at__gte=since, at__lt=until
    ).values("invoice_id")
    return (
        PaymentAttempt.objects.filter(
            Q(created_at__gte=since, created_at__lt=until) | Q(invoice_id__in=paid)
        )
        .select_related("invoice")
        .order_by("pk")
    )


def _money(amount_minor: int, currency: str) -> str:
    return f"{amount_minor} {currency}"


def ledger_compare(*, since: datetime, until: datetime) -> list[Difference]:
    """Every difference between the ledger and Stripe for [since, until). Raises
    gateway.GatewayError when Stripe cannot be read."""
    intents = {p.payment_intent: p for p in gateway.payment_intents_list(since=since, until=until)}
    attempts = list(_attempts_in_range(since, until))
    # Intents of the range whose attempt is older than the range still belong to the ledger.
    known_ids = {a.stripe_payment_intent for a in attempts} | {a.idempotency_key for a in attempts}
    strays = [p for p in intents.values() if not ({p.payment_intent, p.attempt_key} & known_ids)]
    if strays:
        attempts += list(
            PaymentAttempt.objects.filter(
                Q(stripe_payment_intent__in=[p.payment_intent for p in strays])
                | Q(idempotency_key__in=[p.attempt_key for p in strays if p.attempt_key])
            ).select_related("invoice")
        )
    by_key = {p.attempt_key: p for p in intents.values() if p.attempt_key}
    differences: list[Difference] = []
    matched: set[str] = set()
    succeeded_by_invoice: dict[int, list[str]] = {}
    for attempt in {a.pk: a for a in attempts}.values():
        intent = _intent_of(attempt, intents, by_key)
        invoice = attempt.invoice.number or str(attempt.invoice_id)
        here = {"invoice": invoice, "attempt": attempt.idempotency_key}
        if intent is None:
            if attempt.status in SENT or attempt.stripe_payment_intent:
                differences.append(
                    Difference(
                        "missing_at_stripe",
                        payment_intent=attempt.stripe_payment_intent,
                        ours=f"{attempt.status}, {_money(attempt.amount_minor, attempt.currency)}",
                        stripe="no such payment intent",
                        **here,
                    )
                )
            elif attempt.status in IN_FLIGHT:
                differences.append(
                    Difference(
                        "unsettled", ours=attempt.status, stripe="no payment intent found", **here
                    )
                )
            continue
        matched.add(intent.payment_intent)
        here["payment_intent"] = intent.payment_intent
        if intent.status == "succeeded":
            succeeded_by_invoice.setdefault(attempt.invoice_id, []).append(intent.payment_intent)
        ours_money = _money(attempt.amount_minor, attempt.currency)
        theirs_money = _money(intent.amount_minor, intent.currency)
        if ours_money != theirs_money:
            differences.append(
                Difference("amount_differs", ours=ours_money, stripe=theirs_money, **here)
            )
        if attempt.status != intent.outcome:
            differences.append(
                Difference(
                    "status_differs",
                    ours=attempt.status,
                    stripe=f"{intent.status} ({intent.outcome})",
                    **here,
                )
            )
        elif intent.status == "succeeded" and attempt.invoice.status != InvoiceStatus.PAID:
            differences.append(
                Difference(
                    "status_differs",
                    ours=f"invoice {attempt.invoice.status}",
                    stripe="paid",
                    **here,
                )
            )
    for invoice_id, paid in succeeded_by_invoice.items():
        if len(paid) > 1:
            invoice = next(a.invoice for a in attempts if a.invoice_id == invoice_id)
            differences.append(
                Difference(
                    "charged_twice",
                    invoice=invoice.number or str(invoice_id),
                    payment_intent=", ".join(sorted(paid)),
                    ours="one invoice",
                    stripe=f"{len(paid)} succeeded payment intents",
                )
            )
    for intent in intents.values():
        if intent.payment_intent not in matched:
            differences.append(
                Difference(
                    "missing_locally",
                    invoice=intent.invoice,
                    attempt=intent.attempt_key,
                    payment_intent=intent.payment_intent,
                    ours="no payment attempt",
                    stripe=f"{intent.status}, {_money(intent.amount_minor, intent.currency)}",
                )
            )
    # Refunds made through the portal are ledger rows (billing.refunds), matched by Stripe's
    # id; every other refund at Stripe is money that left outside the ledger.
    at_stripe = gateway.refunds_list(since=since, until=until)
    ours = dict(
        Refund.objects.filter(stripe_refund_id__in=[r.refund for r in at_stripe]).values_list(
            "stripe_refund_id", "amount_minor"
        )
    )
    for refund in at_stripe:
        if refund.refund in ours:
            if ours[refund.refund] != refund.amount_minor:
                differences.append(
                    Difference(
                        "amount_differs",
                        payment_intent=refund.payment_intent,
                        ours=f"refund {_money(ours[refund.refund], refund.currency)}",
                        stripe=f"refund {refund.refund} "
                        f"{_money(refund.amount_minor, refund.currency)}",
                    )
                )
            continue
        differences.append(
            Difference(
                "refund_not_in_ledger",
                payment_intent=refund.payment_intent,
                ours="no refund",
                stripe=f"refund {refund.refund} {refund.status}, "
                f"{_money(refund.amount_minor, refund.currency)}",
            )
        )
    return differences


def _intent_of(attempt: PaymentAttempt, intents: dict, by_key: dict):
    if attempt.stripe_payment_intent:
        found = intents.get(attempt.stripe_payment_intent)
        if found is None:  # created outside the range: asked for by id
            found = gateway.payment_intent_record(payment_intent=attempt.stripe_payment_intent)
        return found
    return by_key.get(attempt.idempotency_key)

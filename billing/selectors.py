"""Read paths of billing, scoped by the requesting principal."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q, QuerySet, Sum

from accounts.errors import NotFound
from accounts.models import Account
from accounts.principals import accounts_for
from metering.models import AnomalyStatus, HoldKind, SubjectKind, UsageAnomaly, UsageHold
from plans import periods
from plans.models import Subscription
from plans.money import format_money

from . import phrases, statement, taxing
from .closing import DEFERRED_ON_ANNUAL, late_histories, units_by_period
from .models import (
    AccountCredit,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceStatus,
    Refund,
    UsageRecordStatus,
)
from .pdf import DocumentLine, InvoiceDocument, TaxRow
from .shopify_figures import shopify_number


def invoice_list(*, account: Account) -> QuerySet[Invoice]:
    return (
        Invoice.objects.filter(account=account)
        .select_related("dunning", "credited_invoice")
        .prefetch_related("lines", "credited_invoice__lines")  # what each covers
    )


def invoices_recent(*, account: Account, limit: int) -> list[Invoice]:
    """The account's latest invoices (not credit notes), newest first, with their attempts."""
    return list(
        Invoice.objects.filter(account=account, kind=InvoiceKind.INVOICE)
        .prefetch_related("attempts", "lines")  # the lines say what each covers
        .order_by("-created_at")[:limit]
    )


def chargeable_invoices(*, account: Account) -> list[Invoice]:
    """What "Pay all outstanding" charges: unpaid invoices not held by the cap (an operator
    decides on those, P8), oldest first. Those waiting for the customer's confirmation are
    confirmed on the secure page instead."""
    return list(
        Invoice.objects.filter(
            account=account,
            kind=InvoiceKind.INVOICE,
            status__in=[InvoiceStatus.PAST_DUE, InvoiceStatus.OPEN],
        )
        .exclude(dunning__held_reason__gt="")
        .order_by("issued_at", "pk")
    )


def invoice_get(*, principal, invoice_id: int) -> Invoice:
    """The invoice if the principal reaches its account; 404 otherwise (no existence leak)."""
    invoice = (
        Invoice.objects.filter(pk=invoice_id, account__in=accounts_for(principal))
        .select_related("account", "credited_invoice", "dunning")
        .prefetch_related("lines", "status_changes")
        .first()
    )
    if invoice is None:
        raise NotFound(f"No invoice {invoice_id}.")
    return invoice


def invoice_refunds(*, invoice: Invoice) -> QuerySet[Refund]:
    """The money going back to the card for a document the caller reached (invoice_get): a
    credit note's refunds, or an invoice's through its credit notes; oldest first."""
    return (
        Refund.objects.filter(Q(credit_note=invoice) | Q(credit_note__credited_invoice=invoice))
        .select_related("credit_note")
        .order_by("pk")
    )


def note_account_credit_minor(*, note: Invoice) -> int:
    """What of a credit note became the account's credit: a paid invoice's credit not
    refunded, and the amount of any refund of it that failed."""
    return (
        AccountCredit.objects.filter(source=note).aggregate(total=Sum("amount_minor"))["total"] or 0
    )


def invoice_document(*, invoice: Invoice) -> InvoiceDocument:
    """What the invoice PDF shows: the invoice as issued, with the parties frozen at issue."""
    account = invoice.account
    # An invoice issued before tax froze no parties: it prints today's seller (TAX_SELLER_*)
    # and the account's details, as it always did.
    parties = invoice.parties or taxing.parties(account)
    seller, buyer = parties["seller"], parties["buyer"]
    notes = [invoice.note] if invoice.note else []
    # Shopify channel: the usage records that bill each line, with Shopify's record ids.
    records = _line_records(invoice) if account.pays_through_shopify else {}
    taxed = bool(invoice.tax_treatment)
    lines = list(invoice.lines.all())
    return InvoiceDocument(
        number=invoice.number or "",
        kind=invoice.kind,
        status=invoice.status,
        issued_at=invoice.issued_at,
        covers=tuple(cover.words for cover in phrases.invoice_covers(invoice)),
        currency=invoice.currency,
        seller=_party_lines(seller, country=False),
        customer_name=buyer["legal_name"] or account.name,
        customer_lines=_party_lines(buyer, country=True)[1:],
        billing_email=account.billing_email,
        lines=tuple(
            DocumentLine(
                description=line.description,
                quantity=line.quantity,
                unit_price_minor=line.unit_price_minor,
                amount_minor=line.amount_minor,
                covers=_line_covers(invoice, line),
                records=tuple(records.get(line.pk, ())),
            )
            for line in lines
            # With tax, account credit applied is not a line of the supply: it settles the
            # total after tax and is printed under it.
            if not (taxed and line.is_settlement)
        ),
        total_minor=invoice.total_minor,
        notes=tuple(notes),
        usage_statement=account.pays_through_shopify and invoice.kind == InvoiceKind.INVOICE,
        **_tax_parts(invoice, lines),
        **_settlement(invoice),
    )


def _party_lines(party: dict, *, country: bool) -> tuple[str, ...]:
    """A party as printed: legal name, address lines, country code (the buyer's: the seller's
    address ends with its country already), then its tax id."""
    tax_id = party.get("tax_id") or ""
    lines = (
        party.get("legal_name") or "",
        *party.get("address", ()),
        party.get("country", "") if country else "",
        f"VAT id: {tax_id}" if tax_id else "",
    )
    return tuple(line for line in lines if line)


def _tax_parts(invoice: Invoice, lines: list[InvoiceLine]) -> dict:
    """The frozen tax of an issued invoice or credit note, as the totals print it; nothing for
    one issued before tax (its one "Total" is all it ever said)."""
    if not invoice.tax_treatment:
        return {}
    return {
        "subtotal_minor": invoice.subtotal_minor,
        "tax_rows": tuple(
            TaxRow(
                label=row["label"], taxable_minor=row["taxable_minor"], tax_minor=row["tax_minor"]
            )
            for row in invoice.tax_rates
        ),
        "tax_minor": invoice.tax_minor,
        "credit_applied": tuple(
            (line.description, line.amount_minor) for line in lines if line.is_settlement
        ),
        "mentions": tuple(invoice.tax_decision.get("mentions", ())),
        "national_vat": _national_vat_sentence(invoice),
    }


def _national_vat_sentence(invoice: Invoice) -> str:
    national = taxing.stored_national_vat(invoice)
    return national.sentence() if national is not None else ""


_RECORD_STATUS_WORDS: dict[str, str] = {
    UsageRecordStatus.POSTED: "posted",
    UsageRecordStatus.HELD: "held over the approved cap",
    UsageRecordStatus.FAILED: "refused by Shopify, with our team",
}


def _line_records(invoice: Invoice) -> dict[int, list[str]]:
    """Per line, its usage records in words: "Shopify usage record 4021: $500.00 posted"; a part
    not posted yet says what it waits for instead of an id."""
    by_line: dict[int, list[str]] = {}
    for record in invoice.usage_records.order_by("line_id", "part"):
        money = format_money(record.amount_minor, record.currency)
        status = _RECORD_STATUS_WORDS.get(record.status, "being sent to Shopify")
        if record.shopify_gid:
            words = f"Shopify usage record {shopify_number(record.shopify_gid)}: {money} {status}"
        else:
            words = f"Usage record part {record.part}: {money} {status}"
        by_line.setdefault(record.line_id, []).append(words)
    return by_line


def _line_covers(invoice: Invoice, line: InvoiceLine) -> str:
    """Each line's own days: fees in advance cover the cycle that starts, usage in arrears the
    period that ended; a credit note's line, what the invoice it credits covers."""
    if invoice.kind == InvoiceKind.CREDIT_NOTE:
        return phrases.credit_note_words(invoice)
    what = phrases.line_covers(line)
    if what is None:
        return ""
    return phrases.Cover(what=what, start=line.period_start, end=line.period_end).words


def _settlement(invoice: Invoice) -> dict:
    """Under an issued invoice's total: the credit notes and charges that settled it and what
    is still due, from the statement of account (a draft or a credit note prints none)."""
    if invoice.kind != InvoiceKind.INVOICE or not invoice.is_final:
        return {}
    figures = statement.invoice_figures(invoice)
    return {
        "settlement": tuple(statement.settlement_parts(figures)),
        "amount_due_minor": figures.amount_due_minor,
    }


def late_units_not_invoiced(*, subscription: Subscription) -> dict[str, int]:
    """F6: per meter, units of the subscription's closed periods counted since their close
    and not invoiced yet: the late usage the open period's invoice will carry, those of the
    account's ended subscriptions included (closing.late_histories). Voice and SMS months of a
    running annual cycle are not late (the cycle-end invoice prices them, P4), and closes
    beyond the late look-back are never billed again, so neither counts."""
    closes = late_histories([subscription]).get(subscription.pk, [])
    counted = units_by_period((subscription.account_id, c.period_start) for c in closes)
    running_annual = subscription.interval == periods.YEAR
    late: dict[str, int] = {}
    for close in closes:
        for meter, units in counted.get((subscription.account_id, close.period_start), {}).items():
            if (
                running_annual
                and meter in DEFERRED_ON_ANNUAL
                and close.period_start >= subscription.current_period_start
            ):
                continue
            extra = units - close.billed_units.get(meter, 0)
            if extra > 0:  # fewer units than billed is a correction (a credit), not late usage
                late[meter] = late.get(meter, 0) + extra
    return late


def late_units_shown(*, subscription: Subscription, start: datetime) -> dict[str, int]:
    """F6: the late units that the usage of the period starting at `start` shows. They are
    billed on the open period's invoice, so that is the one period that shows them; a closed
    period's late units were on its invoice already, and a later period's will be known when it
    is open. Passed to metering.selectors.usage_summary, which knows nothing of invoices."""
    if subscription.ended_at is not None or start != subscription.usage_period_start:
        return {}  # an ended subscription has no open period: they wait for a start again
    return late_units_not_invoiced(subscription=subscription)


# --- the spike guard's held units (billing.spike_guard) -------------------------------------

# An anomaly decided (or alerted on) longer ago than this is history, not "recent".
RECENT_ANOMALIES = timedelta(days=30)
# A loop of thousands of tickets is told by its count; its ticket ids only up to this many.
LOOP_TICKETS_LISTED = 500


@dataclass(frozen=True)
class LoopHeld:
    """One reason's active loop holds (one burst, one requester or one subject)."""

    reason: str
    count: int
    tickets: list[str]  # the first LOOP_TICKETS_LISTED, oldest hold first
    held_at: datetime  # the first hold's
    release_after: datetime  # the earliest automatic release


def anomalies_recent(*, account: Account, now: datetime) -> list[UsageAnomaly]:
    """The account's anomalies still open, and those opened or resolved in the last 30 days;
    the latest day first."""
    since = now - RECENT_ANOMALIES
    return list(
        UsageAnomaly.objects.filter(account=account)
        .filter(Q(status=AnomalyStatus.OPEN) | Q(opened_at__gte=since) | Q(resolved_at__gte=since))
        .order_by("-day", "meter")
    )


def anomaly_get(*, account: Account, anomaly_id: int) -> UsageAnomaly:
    anomaly = UsageAnomaly.objects.filter(account=account, pk=anomaly_id).first()
    if anomaly is None:
        raise NotFound(f"No usage anomaly {anomaly_id} on this account.")
    return anomaly


def loops_held(*, account: Account) -> list[LoopHeld]:
    """The account's active loop holds grouped by reason, the oldest burst first."""
    rows = (
        UsageHold.objects.filter(
            account=account,
            kind=HoldKind.LOOP,
            released_at__isnull=True,
            excluded_at__isnull=True,
        )
        .order_by("held_at", "subject")
        .values_list("reason", "subject", "held_at", "release_after")
    )
    groups: dict[str, list[tuple[str, datetime, datetime]]] = {}
    for reason, subject, held_at, release_after in rows:
        groups.setdefault(reason, []).append((subject, held_at, release_after))
    return [
        LoopHeld(
            reason=reason,
            count=len(held),
            tickets=[subject for subject, _, _ in held[:LOOP_TICKETS_LISTED]],
            held_at=held[0][1],
            release_after=min(r for _, _, r in held),
        )
        for reason, held in groups.items()
    ]


def loop_holds_of_tickets(*, account: Account, tickets: list[str]) -> list[UsageHold]:
    """The active loop holds of these tickets (of this account); NotFound when none is."""
    holds = list(
        UsageHold.objects.filter(
            account=account,
            kind=HoldKind.LOOP,
            subject_kind=SubjectKind.TICKET,
            subject__in=set(tickets),
            released_at__isnull=True,
            excluded_at__isnull=True,
        ).order_by("held_at", "subject")
    )
    if not holds:
        raise NotFound("None of these tickets is held as a suspected loop.", code="not_held")
    return holds

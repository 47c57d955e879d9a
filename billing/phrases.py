"""Merchant phrases that more than one surface says: what an invoice covers, in one wording.

An invoice closing a period carries two kinds of lines: usage in arrears (the closed month)
and fees in advance (the cycle that starts). Its own period is the usage month, so a surface
that printed "Period: Nov 1 – Nov 30" under a line of December's fees told the merchant the
wrong thing. Every surface (the landing page, the Invoices tab, the PDF, the receipt email,
the API) says instead what the invoice *covers*, from its lines: "Usage Nov 1 – Nov 30, 2026"
and "Fees Dec 1 – Dec 31, 2026". A credit note covers what the invoice it credits covers.

Words said on one surface only stay in its template; words of one meter, add-on or tier come
from the catalog (plans.meters, the add-on and tier names).
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from plans.money import format_money
from plans.periods import format_period

from .models import (
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceReason,
    TicketDispute,
    TicketDisputeOutcome,
    TicketDisputeStatus,
)

USAGE = "usage"
FEES = "fees"
_WORDS = {USAGE: "Usage", FEES: "Fees"}

_USAGE_KINDS = frozenset({"overage", "late_usage"})
_FEE_KINDS = frozenset({"plan_fee", "addon_fee", "edition_fee", "commitment", "proration"})


@dataclass(frozen=True)
class Cover:
    """Days an invoice's lines cover, half-open [start, end), and what for: usage or fees."""

    what: str  # USAGE | FEES
    start: datetime
    end: datetime

    @property
    def words(self) -> str:
        """ "Fees Dec 1 – Dec 31, 2026"."""
        return f"{_WORDS[self.what]} {format_period(self.start, self.end)}"


def line_covers(line: InvoiceLine) -> str | None:
    """What one line pays for: usage (in arrears), fees (in advance), or None for lines that
    only move money (account credit used or carried, a credit note's amount)."""
    if line.kind in _USAGE_KINDS:
        return USAGE
    if line.kind in _FEE_KINDS:
        return FEES
    if line.kind == "credit":
        # The rule ids stay on the line as data: an upgrade's credit (P6) gives back fees, a
        # late correction (F6) gives back usage; a credit used (F5 alone) covers nothing.
        if "P6" in line.rules:
            return FEES
        if "F6" in line.rules:
            return USAGE
    return None


def _merged(periods: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Overlapping or touching periods as one: late usage of October beside November's usage
    reads "Oct 1 – Nov 30"; disjoint ones stay apart."""
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(periods):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _lines_covers(lines: Iterable[InvoiceLine]) -> tuple[Cover, ...]:
    by_what: dict[str, list[tuple[datetime, datetime]]] = {USAGE: [], FEES: []}
    for line in lines:
        what = line_covers(line)
        if what is not None:
            by_what[what].append((line.period_start, line.period_end))
    return tuple(
        Cover(what=what, start=start, end=end)
        for what in (USAGE, FEES)
        for start, end in _merged(by_what[what])
    )


def invoice_covers(invoice: Invoice) -> tuple[Cover, ...]:
    """What the invoice covers, usage first then fees; a credit note, what the invoice it
    credits covers. Reads the lines through `invoice.lines.all()` (prefetch them for a list)."""
    source = invoice.credited_invoice if invoice.credited_invoice_id else invoice
    assert source is not None  # credited_invoice_id set: the row exists (PROTECT)
    covers = _lines_covers(source.lines.all())
    if covers:
        return covers
    # Nothing billed for usage or fees (a period with nothing to charge): the period it is for.
    what = USAGE if source.reason == InvoiceReason.PERIOD_CLOSE else FEES
    return (Cover(what=what, start=source.period_start, end=source.period_end),)


def covers_words(covers: Iterable[Cover], *, sep: str = "; ") -> str:
    """ "Usage Nov 1 – Nov 30, 2026; Fees Dec 1 – Dec 31, 2026"."""
    return sep.join(cover.words for cover in covers)


def covers_span(covers: Iterable[Cover]) -> tuple[datetime, datetime]:
    """From the first day covered to the end of the last: a credit note's own period."""
    covers = list(covers)
    return min(c.start for c in covers), max(c.end for c in covers)


def credit_note_words(invoice: Invoice) -> str:
    """What a credit note's line covers: "Credits invoice 2026-000002: Usage …; Fees …"."""
    credited = invoice.credited_invoice
    if invoice.kind != InvoiceKind.CREDIT_NOTE or credited is None:
        return ""
    return f"Credits invoice {credited.number}: {covers_words(invoice_covers(invoice))}"


# Treatments whose tax is a US state's sales tax; every other taxed treatment charges VAT.
_SALES_TAX_TREATMENTS = frozenset({"us_sales_tax"})


def tax_included_words(invoice: Invoice) -> str:
    """ "incl. €12.27 VAT" beside an invoice's total, on the receipt and the page; empty when
    it carries no tax (reverse charge, outside the EU, issued before tax)."""
    if not invoice.tax_minor:
        return ""
    what = "sales tax" if invoice.tax_treatment in _SALES_TAX_TREATMENTS else "VAT"
    return f"incl. {format_money(abs(invoice.tax_minor), invoice.currency)} {what}"


def ticket_dispute_outcome_words(dispute: TicketDispute) -> str:
    """What a contested ticket came to, as the Why page, the Usage tab, the console and the
    decision's email say it: "allowance restored, no charge change", "credited $40.00 on
    credit note 2026-000007", "excluded: this period is rated without it", "rejected: still
    billed" or "waiting for a decision"."""
    if dispute.status == TicketDisputeStatus.OPEN:
        return "waiting for a decision"
    if dispute.status == TicketDisputeStatus.REJECTED:
        return "rejected: still billed"
    if dispute.outcome == TicketDisputeOutcome.CREDITED and dispute.credit_note is not None:
        # The note's total, its tax included: what the merchant gets back.
        note = dispute.credit_note
        amount = format_money(abs(note.total_minor), note.currency)
        return f"credited {amount} on credit note {note.number}"
    if dispute.outcome == TicketDisputeOutcome.ALLOWANCE_RESTORED:
        return "allowance restored, no charge change"
    return "excluded: this period is rated without it"

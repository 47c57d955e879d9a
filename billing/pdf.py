"""Invoice and credit-note PDFs: a frozen document in, PDF bytes out.

Pure module (no Django, no database, no clock): callers build an ``InvoiceDocument`` from their
rows and get an A4 PDF back. Every amount goes through ``plans.money.format_money``; the issue
date is written in UTC ("Nov 22, 2026"). What the document and each line cover comes in words
(billing.phrases: "Usage Nov 1 – Nov 30, 2026", "Fees Dec 1 – Dec 31, 2026"), the wording every
other surface uses. Rule ids are not printed: a customer reads words; the lines keep their rule
ids as data (the API, the console, "Why was this billed?"). The same document always renders
to the same bytes, because the PDF's creation date comes from ``issued_at`` rather than from
the clock.

fpdf2's built-in fonts can only draw the Windows-1252 character set, so text is mapped onto it
first: typographic characters get ASCII stand-ins ("→" becomes "->"), accented letters the
set lacks keep their base letter, anything else becomes "?", and a currency whose symbol
cannot be drawn is written with its ISO code ("INR 1,234.50"). Nothing a customer types can
make rendering fail.

Public API
    InvoicePdfError                                      a document the renderer refuses
    DocumentLine, TaxRow, InvoiceDocument                what one invoice or credit note shows
    USAGE_STATEMENT_TITLE, NOT_A_TAX_INVOICE             a Shopify-channel document's words
    render_invoice_pdf(document: InvoiceDocument) -> bytes
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from fpdf import FPDF
from fpdf.enums import MethodReturnValue, XPos, YPos

from plans.money import format_money, format_unit_price
from plans.periods import format_day

__all__ = [
    "NOT_A_TAX_INVOICE",
    "USAGE_STATEMENT_TITLE",
    "DocumentLine",
    "InvoiceDocument",
    "TaxRow",
    "InvoicePdfError",
    "render_invoice_pdf",
]


class InvoicePdfError(ValueError):
    """A document the renderer refuses: unknown kind or status, naive datetime, bad price."""


@dataclass(frozen=True)
class DocumentLine:
    """One line of the table: what was billed, how much of it, and what it covers."""

    description: str
    quantity: int
    unit_price_minor: Decimal  # may be fractional minor units: Decimal("33.5") is $0.335
    amount_minor: int  # negative for credits
    # What the line pays for, printed small under the description: "Fees Dec 1 – Dec 31, 2026"
    # (in advance), "Usage Nov 1 – Nov 30, 2026" (in arrears); empty for a line that only moves
    # money (account credit).
    covers: str = ""
    # A usage statement (Shopify channel): the usage records that bill this line through
    # Shopify, in words ("Shopify usage record 4021: $500.00"), printed under the covers.
    records: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaxRow:
    """One rate of the tax breakdown: its printed label, the base it applies to, the tax."""

    label: str  # "VAT FR 20 %", "Reverse charge", "WA sales tax 6.5 %"
    taxable_minor: int
    tax_minor: int


@dataclass(frozen=True)
class InvoiceDocument:
    """Everything an invoice or credit note prints, already resolved to plain values."""

    number: str  # empty for a draft, which prints "DRAFT" instead
    kind: str  # "invoice" | "credit_note"
    status: str
    issued_at: datetime | None
    covers: tuple[str, ...]  # what the lines cover, one cover a line: usage, then fees
    currency: str
    seller: tuple[str, ...]
    customer_name: str
    customer_lines: tuple[str, ...]
    billing_email: str
    lines: tuple[DocumentLine, ...]
    total_minor: int
    notes: tuple[str, ...] = ()
    # Below the total, from the statement of account: how it was settled so far, as
    # (words, amount taken off) pairs, and what is still due (None: not printed).
    settlement: tuple[tuple[str, int], ...] = ()
    amount_due_minor: int | None = None
    # Shopify channel: Shopify invoices the merchant, so our document is a usage statement and
    # says it is not a tax invoice (Shopify's bill is).
    usage_statement: bool = False
    # Tax (docs/tax.md), as frozen at issue. `subtotal_minor` None: an invoice issued before
    # tax, which prints one "Total" as it always did. Otherwise the totals read subtotal, one
    # row per rate, total tax, total incl. tax, then the account credit applied after tax
    # (`credit_applied`, the settlement lines: not in the table, outside the taxable base).
    subtotal_minor: int | None = None
    tax_rows: tuple[TaxRow, ...] = ()
    tax_minor: int = 0
    credit_applied: tuple[tuple[str, int], ...] = ()
    # The legal mentions of the decision (reverse charge, outside the EU, OSS, ...).
    mentions: tuple[str, ...] = ()
    # The VAT in the seller's national currency on a document in another one (Article 230):
    # "VAT due in EUR: €60.61 (ECB rate 1 EUR = 1.0856 USD of 2026-12-04)", under the total tax.
    national_vat: str = ""


USAGE_STATEMENT_TITLE = "Usage statement"
NOT_A_TAX_INVOICE = (
    "Not a tax invoice: Shopify invoices you for these charges on your Shopify bill."
)


_TITLES = {"invoice": "Invoice", "credit_note": "Credit note"}
_STATUSES = frozenset(
    {
        "draft",
        "open",
        "paid",
        "requires_confirmation",
        "past_due",
        "void",
        "uncollectible",
        "disputed_lost",
    }
)
# Statuses that change what the paper means get a stamp a reader cannot miss.
_STAMPS = {"paid": ("PAID", (21, 128, 61)), "void": ("VOID", (185, 28, 28))}

# fpdf2 declares its core fonts with WinAnsiEncoding (which is cp1252) but encodes text as
# Latin-1 by default, refusing "€", "—" and curly quotes the fonts can draw. Encoding as cp1252
# matches what the PDF declares, so only characters outside cp1252 need mapping.
_ENCODING = "cp1252"
_SUBSTITUTES = str.maketrans(
    {
        "\u2190": "<-",
        "\u2192": "->",
        "\u2194": "<->",
        "\u21d2": "=>",
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2212": "-",
        "\u2032": "'",
        "\u2033": '"',
        "\u2248": "~",
        "\u2260": "!=",
        "\u2264": "<=",
        "\u2265": ">=",
        "\u2002": " ",
        "\u2003": " ",
        "\u2007": " ",
        "\u2009": " ",
        "\u200a": " ",
        "\u202f": " ",
        "\u2028": " ",
        "\u2029": " ",
        "\u200b": "",
        "\u200d": "",
        "\u2060": "",
        "\ufeff": "",
        # Letters with no decomposition to a base letter, common in customer addresses.
        "\u0110": "D",
        "\u0111": "d",
        "\u0131": "i",
        "\u0141": "L",
        "\u0142": "l",
    }
)
# A draft has no issue time; a fixed creation date keeps its bytes reproducible.
_UNISSUED_CREATED_AT = datetime(2000, 1, 1, tzinfo=UTC)

_FONT = "Helvetica"
_MARGIN = 18.0
_LINE_H = 4.6
_SMALL_H = 3.6
_ROW_PAD = 1.8
_GREY = (100, 100, 100)
_RULE_GREY = (210, 210, 210)
_HEAD_FILL = (241, 243, 245)
_NUMBER_COLUMNS = (("Quantity", 22.0), ("Unit price", 28.0), ("Amount", 30.0))


def _encodable(text: str) -> bool:
    try:
        text.encode(_ENCODING)
    except UnicodeEncodeError:
        return False
    return True


def _pdf_text(text: str) -> str:
    """Map text onto what the core fonts can draw; never fails, never drops a whole word."""
    drawable = []
    for char in text.translate(_SUBSTITUTES):
        if _encodable(char) and unicodedata.category(char) != "Cc":
            drawable.append(char)
        elif char.isspace():
            drawable.append(" ")
        elif unicodedata.category(char) == "Cc":
            continue
        else:
            # "ő" -> "o": keep the base letter when only the accent is missing from cp1252.
            base = "".join(
                part
                for part in unicodedata.normalize("NFKD", char)
                if _encodable(part) and not unicodedata.combining(part)
            )
            drawable.append(base or "?")
    return "".join(drawable)


def _drawable_money(text: str, currency: str) -> str:
    if _encodable(text):
        return text
    # A symbol the fonts cannot draw ("₹") becomes the ISO code rather than a "?".
    bare = "".join(char for char in text if _encodable(char)).strip()
    return f"{currency} {bare}"


def _money_text(amount_minor: int, currency: str) -> str:
    return _drawable_money(format_money(amount_minor, currency), currency)


def _unit_price_text(unit_price_minor: Decimal, currency: str) -> str:
    """Write a per-unit price exactly, sub-minor digits included: Decimal("33.5") -> "$0.335"."""
    if not isinstance(unit_price_minor, Decimal) or not unit_price_minor.is_finite():
        raise InvoicePdfError(
            f"unit_price_minor must be a finite Decimal, got {unit_price_minor!r}"
        )
    text = format_unit_price(unit_price_minor, currency)
    return _drawable_money(text, currency)


def _utc(at: datetime, what: str) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        # A naive datetime would be read in the server's zone and could print the wrong day.
        raise InvoicePdfError(f"{what} must be timezone-aware, got {at!r}")
    return at.astimezone(UTC)


def _check(document: InvoiceDocument) -> None:
    if document.kind not in _TITLES:
        raise InvoicePdfError(f"unknown document kind {document.kind!r}")
    if document.status not in _STATUSES:
        raise InvoicePdfError(f"unknown invoice status {document.status!r}")


class _InvoicePdf(FPDF):
    """An A4 page with a footer; while the table runs, each new page repeats its header."""

    def __init__(self, *, footer_text: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.core_fonts_encoding = _ENCODING
        self.footer_text = footer_text
        self.table_widths: tuple[float, ...] = ()
        self.table_body_top = 0.0
        self.set_margins(_MARGIN, _MARGIN, _MARGIN)
        self.set_auto_page_break(auto=True, margin=20)

    def header(self) -> None:
        if self.table_widths:
            _draw_table_head(self)

    def footer(self) -> None:
        self.set_y(-13)
        self.set_font(_FONT, "", 7.5)
        self.set_text_color(*_GREY)
        self.cell(0, 4, f"{self.footer_text}   Page {self.page_no()} of {{nb}}", align="R")
        self.set_text_color(0, 0, 0)


def _block(pdf: FPDF, x: float, width: float, lines: tuple[str, ...]) -> None:
    """Write lines one under the other at x, wrapping each within width; the first in bold."""
    for index, line in enumerate(lines):
        pdf.set_font(_FONT, "" if index else "B", 9.5)
        pdf.set_x(x)
        pdf.multi_cell(width, _LINE_H, _pdf_text(line), align="L", new_x=XPos.LEFT)


def _draw_heading(pdf: _InvoicePdf, document: InvoiceDocument, title: str) -> None:
    top = pdf.get_y()
    left_w = pdf.epw * 0.5
    _block(pdf, pdf.l_margin, left_w - 6, document.seller)
    seller_bottom = pdf.get_y()

    right_x = pdf.l_margin + left_w
    right_w = pdf.epw - left_w
    pdf.set_xy(right_x, top)
    pdf.set_font(_FONT, "B", 22)
    pdf.cell(right_w, 10, title, align="R", new_x=XPos.LEFT, new_y=YPos.NEXT)
    if document.usage_statement:
        pdf.set_font(_FONT, "B", 8.5)
        pdf.multi_cell(right_w, _LINE_H, _pdf_text(NOT_A_TAX_INVOICE), align="R")
        pdf.set_x(right_x)
    pdf.ln(1.5)
    facts = (
        ("Number", document.number or "DRAFT"),
        ("Status", document.status.replace("_", " ").capitalize()),
        (
            "Issue date",
            format_day(_utc(document.issued_at, "issued_at"))
            if document.issued_at
            else "Not issued",
        ),
        # One row a cover, the label on the first: "Usage Nov 1 – Nov 30, 2026", then fees.
        *((("Covers" if i == 0 else ""), words) for i, words in enumerate(document.covers)),
    )
    label_w = 30.0
    for label, value in facts:
        pdf.set_x(right_x)
        pdf.set_font(_FONT, "", 9)
        pdf.set_text_color(*_GREY)
        pdf.cell(label_w, _LINE_H + 0.4, label)
        pdf.set_text_color(0, 0, 0)
        pdf.set_font(_FONT, "B" if label == "Number" else "", 9.5)
        pdf.multi_cell(right_w - label_w, _LINE_H + 0.4, _pdf_text(value), align="R")
    pdf.set_y(max(pdf.get_y(), seller_bottom) + 9)


def _draw_bill_to(pdf: _InvoicePdf, document: InvoiceDocument) -> None:
    top = pdf.get_y()
    half = pdf.epw * 0.5
    pdf.set_font(_FONT, "B", 7.5)
    pdf.set_text_color(*_GREY)
    pdf.cell(half, 4, "BILL TO", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(0, 0, 0)
    customer = (document.customer_name, *document.customer_lines, document.billing_email)
    _block(pdf, pdf.l_margin, half - 6, tuple(line for line in customer if line))
    bottom = pdf.get_y()

    stamp = _STAMPS.get(document.status)
    if stamp:
        label, color = stamp
        pdf.set_font(_FONT, "B", 20)
        width = pdf.get_string_width(label) + 12
        pdf.set_xy(pdf.l_margin + pdf.epw - width, top + 2)
        pdf.set_draw_color(*color)
        pdf.set_text_color(*color)
        pdf.set_line_width(0.9)
        pdf.cell(width, 12, label, border=1, align="C")
        pdf.set_line_width(0.2)
        pdf.set_draw_color(0, 0, 0)
        pdf.set_text_color(0, 0, 0)
        bottom = max(bottom, top + 16)
    pdf.set_y(bottom + 8)


def _draw_table_head(pdf: _InvoicePdf) -> None:
    pdf.set_font(_FONT, "B", 8.5)
    pdf.set_fill_color(*_HEAD_FILL)
    labels = ("Description", *(label for label, _ in _NUMBER_COLUMNS))
    pdf.set_x(pdf.l_margin)
    for label, width in zip(labels, pdf.table_widths, strict=True):
        pdf.cell(width, 7, label, fill=True, align="L" if label == "Description" else "R")
    pdf.ln(7)
    pdf.table_body_top = pdf.get_y()


def _draw_row_numbers(pdf: _InvoicePdf, line: DocumentLine, currency: str, top: float) -> None:
    numbers = (
        f"{line.quantity:,}",
        _unit_price_text(line.unit_price_minor, currency),
        _money_text(line.amount_minor, currency),
    )
    pdf.set_xy(pdf.l_margin + pdf.table_widths[0], top + _ROW_PAD)
    for text, width in zip(numbers, pdf.table_widths[1:], strict=True):
        # Shrink rather than overflow into the next column: a long exact price stays legible.
        size = 9.5
        pdf.set_font(_FONT, "", size)
        while pdf.get_string_width(text) > width - 2 * pdf.c_margin and size > 6:
            size -= 0.5
            pdf.set_font(_FONT, "", size)
        pdf.cell(width, _LINE_H, text, align="R")


def _draw_row(pdf: _InvoicePdf, line: DocumentLine, currency: str) -> None:
    desc_w = pdf.table_widths[0]
    description = _pdf_text(line.description)
    # One printed line per part: the covers, then each usage record (newlines are control
    # characters to _pdf_text, so the parts are mapped before they are joined).
    detail = "\n".join(_pdf_text(part) for part in (line.covers, *line.records) if part)

    pdf.set_font(_FONT, "", 9.5)
    desc_lines = pdf.multi_cell(
        desc_w, _LINE_H, description, align="L", dry_run=True, output=MethodReturnValue.LINES
    )
    pdf.set_font(_FONT, "", 7)
    detail_lines = (
        pdf.multi_cell(
            desc_w, _SMALL_H, detail, align="L", dry_run=True, output=MethodReturnValue.LINES
        )
        if detail
        else []
    )
    height = 2 * _ROW_PAD + len(desc_lines) * _LINE_H + len(detail_lines) * _SMALL_H
    # Move a row that does not fit to the next page whole; only a row taller than a page
    # (a pathological description) is left to split, after the header on a fresh page.
    if pdf.will_page_break(height) and pdf.get_y() > pdf.table_body_top + 0.01:
        pdf.add_page()

    top = pdf.get_y()
    page = pdf.page
    # Numbers are written after the description so that copied text reads in table order;
    # a row that will split across pages gets them first, on the page where it starts.
    splits = pdf.will_page_break(height)
    if splits:
        _draw_row_numbers(pdf, line, currency, top)
    pdf.set_xy(pdf.l_margin, top + _ROW_PAD)
    pdf.set_font(_FONT, "", 9.5)
    pdf.multi_cell(desc_w, _LINE_H, description, align="L", new_x=XPos.LMARGIN)
    if detail:
        pdf.set_font(_FONT, "", 7)
        pdf.set_text_color(*_GREY)
        pdf.multi_cell(desc_w, _SMALL_H, detail, align="L", new_x=XPos.LMARGIN)
        pdf.set_text_color(0, 0, 0)
    if not splits:
        _draw_row_numbers(pdf, line, currency, top)

    pdf.set_y(top + height if pdf.page == page else pdf.get_y() + _ROW_PAD)
    pdf.set_draw_color(*_RULE_GREY)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.l_margin + pdf.epw, pdf.get_y())
    pdf.set_draw_color(0, 0, 0)


def _draw_lines(pdf: _InvoicePdf, document: InvoiceDocument) -> None:
    numbers_w = sum(width for _, width in _NUMBER_COLUMNS)
    pdf.table_widths = (pdf.epw - numbers_w, *(width for _, width in _NUMBER_COLUMNS))
    _draw_table_head(pdf)
    for line in document.lines:
        _draw_row(pdf, line, document.currency)
    if not document.lines:
        pdf.set_font(_FONT, "I", 9)
        pdf.cell(pdf.epw, 9, "No lines.", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    # Past the table, page breaks no longer repeat its header.
    pdf.table_widths = ()


def _draw_total(pdf: _InvoicePdf, document: InvoiceDocument) -> None:
    rows = 0 if document.subtotal_minor is None else 3 + len(document.tax_rows)
    rows += 2 if document.national_vat else 0
    below = 6 * (rows + len(document.credit_applied) + len(document.settlement)) + (
        7 if document.amount_due_minor is not None else 0
    )
    if pdf.will_page_break(18 + below):  # the total and what settles it stay together
        pdf.add_page()
    pdf.ln(2)
    # Wider with tax: a rate's row holds its label, its base and its tax.
    width = pdf.epw * (0.45 if document.subtotal_minor is None else 0.55)
    x = pdf.l_margin + pdf.epw - width
    if document.subtotal_minor is not None:
        _draw_tax_breakdown(pdf, document, x, width)
    pdf.set_line_width(0.5)
    pdf.line(x, pdf.get_y(), x + width, pdf.get_y())
    pdf.set_line_width(0.2)
    pdf.ln(2)
    pdf.set_x(x)
    pdf.set_font(_FONT, "B", 11)
    label = "Total" if document.subtotal_minor is None else "Total (incl. tax)"
    total_minor = (
        document.total_minor
        if document.subtotal_minor is None
        else document.subtotal_minor + document.tax_minor
    )
    pdf.cell(width / 2, 7, label)
    pdf.cell(width / 2, 7, _money_text(total_minor, document.currency), align="R")
    pdf.ln(7)
    _draw_credit_applied(pdf, document, x, width)
    _draw_settlement(pdf, document, x, width)
    pdf.set_x(x)
    pdf.set_font(_FONT, "", 7.5)
    pdf.set_text_color(*_GREY)
    pdf.cell(width, 4, f"Amounts in {_pdf_text(document.currency)}.", align="R")
    pdf.set_text_color(0, 0, 0)
    pdf.ln(10)


def _draw_tax_breakdown(
    pdf: _InvoicePdf, document: InvoiceDocument, x: float, width: float
) -> None:
    """Subtotal, one row per rate (label, base, tax) and the total tax, above the total: what
    Article 226 (8)-(10) of the VAT Directive asks an invoice to show."""
    assert document.subtotal_minor is not None
    currency = document.currency
    pdf.set_font(_FONT, "", 9.5)
    pdf.set_x(x)
    pdf.cell(width * 0.6, 6, "Subtotal (excl. tax)")
    pdf.cell(width * 0.4, 6, _money_text(document.subtotal_minor, currency), align="R")
    pdf.ln(6)
    for row in document.tax_rows:
        pdf.set_x(x)
        pdf.set_font(_FONT, "", 9.5)
        pdf.cell(width * 0.3, 6, _pdf_text(row.label))
        pdf.set_font(_FONT, "", 8)
        pdf.set_text_color(*_GREY)
        pdf.cell(width * 0.3, 6, f"on {_money_text(row.taxable_minor, currency)}")
        pdf.set_text_color(0, 0, 0)
        pdf.set_font(_FONT, "", 9.5)
        pdf.cell(width * 0.4, 6, _money_text(row.tax_minor, currency), align="R")
        pdf.ln(6)
    pdf.set_x(x)
    pdf.cell(width * 0.6, 6, "Total tax")
    pdf.cell(width * 0.4, 6, _money_text(document.tax_minor, currency), align="R")
    pdf.ln(7)
    if document.national_vat:
        pdf.set_x(x)
        pdf.set_font(_FONT, "", 8)
        pdf.multi_cell(width, 4, _pdf_text(document.national_vat), align="R", new_x=XPos.LMARGIN)
        pdf.set_font(_FONT, "", 9.5)
        pdf.ln(2)


def _draw_credit_applied(
    pdf: _InvoicePdf, document: InvoiceDocument, x: float, width: float
) -> None:
    """Account credit spent on this invoice, after tax (the settlement lines)."""
    pdf.set_font(_FONT, "", 9)
    for words, amount in document.credit_applied:
        pdf.set_x(x)
        pdf.cell(width * 0.6, 6, _pdf_text(words))
        pdf.cell(width * 0.4, 6, _money_text(amount, document.currency), align="R")
        pdf.ln(6)


def _draw_settlement(pdf: _InvoicePdf, document: InvoiceDocument, x: float, width: float) -> None:
    """Credited, paid and still due, under the total: what the statement of account says."""
    if not document.settlement and document.amount_due_minor is None:
        return
    pdf.set_font(_FONT, "", 9)
    for words, amount in document.settlement:
        pdf.set_x(x)
        pdf.cell(width * 0.6, 6, _pdf_text(words[:1].upper() + words[1:]))
        pdf.cell(width * 0.4, 6, _money_text(-amount, document.currency), align="R")
        pdf.ln(6)
    if document.amount_due_minor is not None:
        pdf.set_x(x)
        pdf.set_font(_FONT, "B", 10)
        pdf.cell(width / 2, 7, "Amount due")
        pdf.cell(width / 2, 7, _money_text(document.amount_due_minor, document.currency), align="R")
        pdf.ln(7)


def _draw_block(pdf: _InvoicePdf, title: str, paragraphs, *, space_after: float = 0) -> None:
    """A titled block of paragraphs (notes, tax mentions), kept off a page's last lines."""
    if not paragraphs:
        return
    if pdf.will_page_break(14):
        pdf.add_page()
    pdf.set_font(_FONT, "B", 7.5)
    pdf.set_text_color(*_GREY)
    pdf.cell(pdf.epw, 5, title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(0, 0, 0)
    pdf.set_font(_FONT, "", 9)
    for paragraph in paragraphs:
        pdf.multi_cell(pdf.epw, _LINE_H, _pdf_text(paragraph), align="L", new_x=XPos.LMARGIN)
        pdf.ln(1)
    if space_after:
        pdf.ln(space_after)


def _draw_notes(pdf: _InvoicePdf, document: InvoiceDocument) -> None:
    _draw_block(pdf, "NOTES", document.notes)


def _draw_mentions(pdf: _InvoicePdf, document: InvoiceDocument) -> None:
    """The tax decision's legal mentions, in a block of their own (reverse charge, ...)."""
    _draw_block(pdf, "TAX", document.mentions, space_after=3)


def render_invoice_pdf(document: InvoiceDocument) -> bytes:
    """Render an invoice or credit note as an A4 PDF; identical documents give identical bytes."""
    _check(document)
    title = _TITLES[document.kind]
    if document.usage_statement and document.kind == "invoice":
        title = USAGE_STATEMENT_TITLE
    number = _pdf_text(document.number) or "DRAFT"
    pdf = _InvoicePdf(footer_text=f"{title} {number}")
    created_at = (
        _utc(document.issued_at, "issued_at") if document.issued_at else _UNISSUED_CREATED_AT
    )
    pdf.set_creation_date(created_at)
    pdf.set_title(f"{title} {document.number or 'DRAFT'}")
    if document.seller:
        pdf.set_author(document.seller[0])
    pdf.set_lang("en")

    pdf.add_page()
    _draw_heading(pdf, document, title)
    _draw_bill_to(pdf, document)
    _draw_lines(pdf, document)
    _draw_total(pdf, document)
    _draw_mentions(pdf, document)
    _draw_notes(pdf, document)
    return bytes(pdf.output())

"""The invoice PDF as a reader sees it: the text extracted from the rendered bytes."""

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from io import BytesIO

import pytest
from pypdf import PdfReader

from billing.pdf import DocumentLine, InvoiceDocument, InvoicePdfError, render_invoice_pdf
from plans import money


def make_line(**changes) -> DocumentLine:
    line = DocumentLine(
        description="Resolved tickets",
        quantity=350,
        unit_price_minor=Decimal("40"),
        amount_minor=14000,
        covers="Usage Nov 1 \u2013 Nov 30, 2026",
    )
    return replace(line, **changes)


def make_document(**changes) -> InvoiceDocument:
    document = InvoiceDocument(
        number="2026-000123",
        kind="invoice",
        status="open",
        issued_at=datetime(2026, 11, 22, 9, 30, tzinfo=UTC),
        covers=("Usage Nov 1 \u2013 Nov 30, 2026", "Fees Dec 1 \u2013 Dec 31, 2026"),
        currency="USD",
        seller=("Deskbill Inc.", "1 Market Street", "San Francisco, CA 94105", "United States"),
        customer_name="Shop Owner",
        customer_lines=("Shop Ltd", "12 High Street", "Dublin", "Ireland", "VAT id: IE1234567X"),
        billing_email="billing@shop.example",
        lines=(
            make_line(),
            make_line(
                description="Basic plan, monthly",
                quantity=1,
                unit_price_minor=Decimal("4900"),
                amount_minor=4900,
                covers="Fees Dec 1 \u2013 Dec 31, 2026",
            ),
        ),
        total_minor=18900,
        notes=("Includes late usage of earlier periods.",),
    )
    return replace(document, **changes)


def pages_text(pdf: bytes) -> list[str]:
    return [page.extract_text() for page in PdfReader(BytesIO(pdf)).pages]


def text_of(document: InvoiceDocument) -> str:
    return "\n".join(pages_text(render_invoice_pdf(document)))


def test_invoice_shows_number_parties_lines_amounts_total_and_notes():
    text = text_of(make_document())

    assert "Invoice" in text
    assert "2026-000123" in text
    assert "Deskbill Inc." in text
    assert "Shop Owner" in text
    assert "VAT id: IE1234567X" in text
    assert "billing@shop.example" in text
    assert "Resolved tickets" in text
    assert "Basic plan, monthly" in text
    assert "$140.00" in text
    assert "$49.00" in text
    assert "$189.00" in text
    assert "Includes late usage of earlier periods." in text


def test_the_heading_says_what_the_invoice_covers_and_each_line_its_own_days():
    lines = [line.strip() for line in text_of(make_document()).splitlines()]

    assert "Covers Usage Nov 1 \u2013 Nov 30, 2026" in lines
    assert "Fees Dec 1 \u2013 Dec 31, 2026" in lines
    assert "Service period" not in "\n".join(lines)
    # Under each description, its own cover: usage in arrears, the fee in advance.
    usage = lines.index("Resolved tickets")
    fee = lines.index("Basic plan, monthly")
    assert lines[usage + 1] == "Usage Nov 1 \u2013 Nov 30, 2026"
    assert lines[fee + 1] == "Fees Dec 1 \u2013 Dec 31, 2026"


def test_a_line_that_covers_nothing_prints_no_detail_under_it():
    credit = make_line(
        description="Credit from 2026-000007: Outage",
        unit_price_minor=Decimal("-500"),
        amount_minor=-500,
        quantity=1,
        covers="",
    )
    lines = [line.strip() for line in text_of(make_document(lines=(credit,))).splitlines()]

    # The numbers follow the description on its own row, and the total comes next.
    row = lines.index("Credit from 2026-000007: Outage 1 -$5.00 -$5.00")
    assert lines[row + 1].startswith("Total")


def test_no_rule_id_is_printed():
    text = text_of(make_document())

    assert not re.search(r"\brules? [A-Z][0-9]|\([A-Z][0-9]+\)", text)


def test_the_issue_date_is_utc():
    # 23:30 in New York on Nov 21 is already Nov 22 in UTC.
    new_york = timezone(timedelta(hours=-5))
    issued_at = datetime(2026, 11, 21, 23, 30, tzinfo=new_york)

    text = text_of(make_document(issued_at=issued_at))

    assert "Issue date Nov 22, 2026" in text


@pytest.mark.parametrize(
    ("unit_price_minor", "currency", "expected"),
    [
        (Decimal("40"), "USD", "$0.40"),
        (Decimal("33.5"), "USD", "$0.335"),
        (Decimal("-0.5"), "USD", "-$0.005"),
        (Decimal("4900"), "EUR", "\u20ac49.00"),
        (Decimal("12.5"), "JPY", "\u00a512.5"),
    ],
)
def test_unit_prices_keep_their_sub_minor_digits(unit_price_minor, currency, expected):
    line = make_line(unit_price_minor=unit_price_minor)

    text = text_of(make_document(currency=currency, lines=(line,)))

    assert expected in text


def test_a_long_invoice_spans_pages_with_every_line_and_the_header_on_each_page():
    lines = tuple(
        make_line(description=f"Usage line {n:03d}", amount_minor=100 + n) for n in range(120)
    )
    total = sum(line.amount_minor for line in lines)

    pages = pages_text(render_invoice_pdf(make_document(lines=lines, total_minor=total)))
    text = "\n".join(pages)

    assert len(pages) >= 3
    assert all(f"Usage line {n:03d}" in text for n in range(120))
    assert all("Description" in page and "Unit price" in page for page in pages)
    assert money.format_money(total, "USD") in pages[-1]
    assert f"Page {len(pages)} of {len(pages)}" in pages[-1]


def test_a_long_description_wraps_without_losing_words():
    description = " ".join(f"seat{n}" for n in range(80))

    text = text_of(make_document(lines=(make_line(description=description),)))

    assert all(f"seat{n}" in text.split() for n in range(80))


def test_a_credit_note_says_so_and_shows_negative_amounts():
    credit = make_line(
        description="Refund of October overage", unit_price_minor=Decimal("-40"), amount_minor=-2500
    )

    text = text_of(make_document(kind="credit_note", lines=(credit,), total_minor=-2500))

    assert "Credit note" in text
    assert "Refund of October overage" in text
    assert "-$25.00" in text


def test_a_draft_prints_draft_instead_of_a_number():
    text = text_of(make_document(number="", status="draft", issued_at=None))

    assert "DRAFT" in text
    assert "Not issued" in text
    assert "PAID" not in text


@pytest.mark.parametrize(
    ("status", "stamp"),
    [("paid", "PAID"), ("void", "VOID")],
)
def test_paid_and_void_invoices_carry_a_stamp(status, stamp):
    assert stamp in text_of(make_document(status=status))


@pytest.mark.parametrize("status", ["open", "past_due", "requires_confirmation"])
def test_other_statuses_carry_no_stamp(status):
    text = text_of(make_document(status=status))

    assert "PAID" not in text
    assert "VOID" not in text


def test_text_outside_latin_1_renders_with_what_the_fonts_can_draw():
    document = make_document(
        currency="EUR",
        seller=("Deskbill GmbH \u2014 Berlin",),
        customer_name="Zo\u00eb \u0141\u00f3d\u017a \u201cShop\u201d",
        lines=(make_line(description="Tickets \u2192 resolved \u2264 10 \u6771\u4eac \U0001f600"),),
        total_minor=14000,
        notes=("Prices in \u20ac \u2212 VAT reverse-charged\u2026",),
    )

    text = text_of(document)

    # cp1252 characters the core fonts draw as themselves (fpdf2's Latin-1 default refuses them).
    assert "Deskbill GmbH \u2014 Berlin" in text
    assert "\u20ac140.00" in text
    assert "\u201cShop\u201d" in text
    assert "reverse-charged\u2026" in text
    # Characters beyond cp1252 get stand-ins rather than an exception.
    assert "Tickets -> resolved <= 10" in text
    assert "Zo\u00eb L\u00f3dz" in text
    assert "Prices in \u20ac - VAT" in text


def test_a_currency_symbol_the_fonts_cannot_draw_is_written_as_its_code(monkeypatch):
    # No catalog currency has such a symbol today; this stands in for one added later.
    monkeypatch.setitem(money._CURRENCIES, "INR", (2, "\u20b9"))
    line = make_line(unit_price_minor=Decimal("33.5"), amount_minor=123450)

    text = text_of(make_document(currency="INR", lines=(line,), total_minor=-500))

    assert "INR 1,234.50" in text
    assert "INR 0.335" in text
    assert "INR -5.00" in text


def test_identical_documents_render_to_identical_bytes():
    first = render_invoice_pdf(make_document())
    second = render_invoice_pdf(make_document())

    assert first == second


def test_a_draft_also_renders_to_identical_bytes():
    draft = make_document(number="", status="draft", issued_at=None)

    assert render_invoice_pdf(draft) == render_invoice_pdf(draft)


def test_the_pdf_creation_date_is_the_issue_time():
    issued_at = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)

    reader = PdfReader(BytesIO(render_invoice_pdf(make_document(issued_at=issued_at))))

    assert reader.metadata.creation_date == issued_at


@pytest.mark.parametrize(
    "changes",
    [
        {"kind": "receipt"},
        {"status": "settled"},
        {"issued_at": datetime(2026, 11, 22, 9, 30)},
        {"lines": (make_line(unit_price_minor=40),)},
    ],
    ids=["unknown kind", "unknown status", "naive issue time", "int price"],
)
def test_refuses_documents_it_would_print_wrongly(changes):
    with pytest.raises(InvoicePdfError):
        render_invoice_pdf(make_document(**changes))

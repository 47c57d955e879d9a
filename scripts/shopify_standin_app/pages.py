"""The merchant's side of Shopify: the page where they approve or decline a charge or a higher
usage cap. Plain HTML, no external assets; the buttons read exactly "Approve" and "Decline"."""

from html import escape

from .state import LineItem, Subscription

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;"
    "color:#202223}dl{display:grid;grid-template-columns:max-content 1fr;gap:.4rem 1rem}"
    "dt{font-weight:600}button{font-size:1rem;padding:.5rem 1.2rem;margin-right:.5rem}"
    ".approve{background:#008060;color:#fff;border:0}.note{color:#6d7175}"
)


def amount(value, currency: str) -> str:
    return f"{currency} {value:,.2f}"


def page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}'
        f"</title><style>{STYLE}</style></head><body>{body}</body></html>"
    )


def buttons() -> str:
    return (
        '<form method="post">'
        '<button class="approve" type="submit" name="decision" value="approve">Approve</button>'
        '<button type="submit" name="decision" value="decline">Decline</button>'
        "</form>"
    )


def confirm_page(sub: Subscription) -> str:
    """The charge as Shopify shows it before the merchant approves an app's subscription."""
    rows = [("Store", sub.shop), ("App subscription", sub.name)]
    for line in sub.lines:
        if line.is_usage:
            rows.append(("Usage cap", f"{amount(line.capped_amount, sub.currency)} per 30 days"))
            rows.append(("Usage terms", line.terms))
        else:
            every = "every 30 days" if line.interval == "EVERY_30_DAYS" else "every year"
            rows.append(("Price", f"{amount(line.recurring_price, sub.currency)} {every}"))
    if sub.test:
        rows.append(("Test charge", "yes: the store is not billed"))
    rows.append(("Status", sub.status.lower()))
    body = f"<h1>Approve subscription</h1>{definitions(rows)}"
    if sub.status == "PENDING":
        body += buttons()
    else:
        body += f'<p class="note">This charge is {escape(sub.status.lower())}.</p>'
    return page(f"Approve {sub.name}", body)


def cap_page(sub: Subscription, line: LineItem) -> str:
    """A higher usage cap the app asked for, waiting for the merchant."""
    rows = [
        ("Store", sub.shop),
        ("App subscription", sub.name),
        ("Current usage cap", f"{amount(line.capped_amount, sub.currency)} per 30 days"),
    ]
    if line.pending_cap is not None:
        rows.append(("New usage cap", f"{amount(line.pending_cap, sub.currency)} per 30 days"))
    rows.append(("Usage terms", line.terms))
    body = f"<h1>Approve a higher usage cap</h1>{definitions(rows)}"
    if line.pending_cap is not None:
        body += buttons()
    else:
        body += '<p class="note">No capped amount increase is waiting.</p>'
    return page(f"Usage cap for {sub.name}", body)


def message_page(title: str, text: str) -> str:
    return page(title, f"<h1>{escape(title)}</h1><p>{escape(text)}</p>")


def definitions(rows: list[tuple[str, str]]) -> str:
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows)
    return f"<dl>{items}</dl>"

"""Read paths of the Billing & Usage page. Every function takes the account and filters on it:
none can return another account's rows.

One module per page (this package re-exports what the views call, `selectors.x`):
    common     the unpaid statuses, a period's last day, a meter's policy in words
    scheduled  the banner of every tab: changes scheduled for the cycle's end (P7)
    overview   the Overview tab          usage    the Usage tab (with resolutions, Z8 Z9)
    why        "Why was this billed?", and the tickets contested (billing.ticket_disputes)
    held       units held for review (billing.spike_guard): the banner, the card, Why
    invoices   the Invoices tab and the statement's figures
    plan       the Plan tab, starting again, cancelling at the cycle's end
    cancel     the cancellation's confirmation step
    addons     the Add-ons tab
    (billing.shopify_figures: the "Paid through Shopify" panel, usage statements' records)
"""

from ...shopify_figures import RecordRow, ShopifyPanel, invoice_records, shopify_panel
from .addons import AddOnOption, addon_options
from .cancel import CancelPreview, cancel_preview
from .common import S, last_day
from .held import (
    HeldBanner,
    HeldUsage,
    TicketHold,
    held_banners,
    held_usage,
    ticket_holds,
)
from .invoices import (
    InvoiceRow,
    account_credit,
    invoice_for_account,
    invoice_rows,
    outstanding_minor,
)
from .overview import Overview, overview
from .plan import (
    Ending,
    PlanOption,
    StartOption,
    plan_options,
    start_options,
    subscription_ended,
    subscription_ending,
)
from .scheduled import ScheduledRow, change_words, scheduled_changes
from .usage import (
    PICKER_PERIODS,
    MeterRow,
    Resolutions,
    Usage,
    daily_counts,
    late_units,
    usage,
)
from .why import (
    CONTESTED_SHOWN,
    DisputeRow,
    TicketContest,
    Verdict,
    contested_tickets,
    ticket_contest,
    ticket_explanation,
)

__all__ = [
    "CONTESTED_SHOWN",
    "PICKER_PERIODS",
    "AddOnOption",
    "CancelPreview",
    "DisputeRow",
    "Ending",
    "HeldBanner",
    "HeldUsage",
    "InvoiceRow",
    "MeterRow",
    "Overview",
    "PlanOption",
    "RecordRow",
    "Resolutions",
    "S",
    "ScheduledRow",
    "ShopifyPanel",
    "StartOption",
    "TicketContest",
    "TicketHold",
    "Usage",
    "Verdict",
    "account_credit",
    "addon_options",
    "cancel_preview",
    "contested_tickets",
    "change_words",
    "daily_counts",
    "held_banners",
    "held_usage",
    "invoice_for_account",
    "invoice_records",
    "invoice_rows",
    "last_day",
    "late_units",
    "outstanding_minor",
    "overview",
    "plan_options",
    "scheduled_changes",
    "shopify_panel",
    "start_options",
    "subscription_ended",
    "subscription_ending",
    "ticket_contest",
    "ticket_explanation",
    "ticket_holds",
    "usage",
]

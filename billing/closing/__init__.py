"""Closing usage periods: one invoice per subscription and period, late usage (F6), scheduled
changes at the cycle's end (P7), and the first invoice of a subscription (P1).

One stage, four modules (this package re-exports their public names):
    claim     close_all and periods_close: claim due subscriptions (SKIP LOCKED), close each
              batch in one transaction, set aside the ones that fail
    start     the first invoice (P1)
    price     one close priced in memory: usage, late usage (F6), cycle-end months (P4), fees
    rollover  scheduled changes (P7), a cancellation at the cycle's end, the next periods
"""

from .claim import (
    CLOSE_BATCH,
    INFRASTRUCTURE,
    SET_ASIDE_BACKOFF,
    Issued,
    close_all,
    periods_close,
    vat_ids_recheck_before_issue,
)
from .price import (
    DEFERRED_ON_ANNUAL,
    LATE_LOOKBACK_CLOSES,
    final_units,
    late_histories,
    late_lookback,
    units_by_period,
)
from .start import start_invoice_issue, subscription_start_invoice

__all__ = [
    "vat_ids_recheck_before_issue",
    "CLOSE_BATCH",
    "DEFERRED_ON_ANNUAL",
    "INFRASTRUCTURE",
    "LATE_LOOKBACK_CLOSES",
    "SET_ASIDE_BACKOFF",
    "Issued",
    "close_all",
    "final_units",
    "late_histories",
    "late_lookback",
    "periods_close",
    "start_invoice_issue",
    "subscription_start_invoice",
    "units_by_period",
]

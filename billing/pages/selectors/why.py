"""The "Why was this billed?" page: one ticket's verdict per meter, each rule in words."""

from dataclasses import dataclass
from datetime import datetime

from accounts.models import Account
from metering import selectors as metering
from metering.models import ChargeStatus
from plans import meters

from ..rules_text import rule_words


@dataclass(frozen=True)
class Verdict:
    meter: str
    counted: bool
    status: str
    billable_at: datetime | None
    pending_until: datetime | None
    period_start: datetime | None
    rules: list[tuple[str, str]]  # (id, words)


def ticket_explanation(*, account: Account, ticket: str) -> list[Verdict]:
    """Why one ticket was (or was not) billed, per meter, with each rule in words."""
    labels = meters.LABELS
    return [
        Verdict(
            meter=labels.get(charge.meter, charge.meter),
            counted=charge.status in (ChargeStatus.FINAL, ChargeStatus.PENDING),
            status=charge.get_status_display(),
            billable_at=charge.billable_at,
            pending_until=charge.pending_until,
            period_start=charge.period_start,
            rules=[(rule, rule_words(rule)) for rule in charge.rules],
        )
        for charge in metering.ticket_billing(account=account, ticket=ticket)
    ]

"""Ingest events the way the API does, then re-evaluate, for service-level tests."""

from datetime import datetime

from accounts.models import Account
from metering import services


def iso(at: datetime) -> str:
    return at.isoformat()


def ingest(account: Account, events: list[dict], *, now: datetime, as_of: datetime | None = None):
    """Store a batch for `account` at `now` and drain the re-evaluation queue as of `as_of`."""
    for event in events:
        event.setdefault("account", account.slug)
        if isinstance(event.get("occurred_at"), datetime):
            event["occurred_at"] = iso(event["occurred_at"])
    result = services.events_ingest(
        raw_events=events, accounts=Account.objects.all(), fixed_account=None, now=now
    )
    assert not result.rejected, result.rejected
    services.reevaluate_all_pending(as_of=as_of or now)
    return result

"""A4 end to end (issue 20): a rule's auto-ack seconds before a resolved automation flow bills
the helpdesk ticket only, through ingest, re-evaluation and a period close."""

from datetime import UTC, datetime, timedelta

import time_machine

from billing.models import Invoice
from billing.run import run_billing
from metering.models import Charge, ChargeStatus
from tests.metering.helpers import ingest

T0 = datetime(2026, 3, 1, 10, tzinfo=UTC)
CLOSE_AT = datetime(2026, 4, 1, 10, tzinfo=UTC)


def acked_then_automated(n: int, at: datetime) -> list[dict]:
    """`n` tickets: the customer writes, a rule acknowledges, 5 s later a flow resolves it."""
    events = []
    for i in range(n):
        ticket = f"a4-{i}"
        when = at + timedelta(minutes=i)
        common = {"ticket": ticket, "channel": "email"}
        events += [
            common
            | {"id": f"{ticket}-c", "type": "message", "author": "customer", "occurred_at": when},
            common
            | {
                "id": f"{ticket}-ack",
                "type": "message",
                "author": "rule",
                "occurred_at": when + timedelta(seconds=10),
            },
            {
                "id": f"{ticket}-flow",
                "type": "automation",
                "ticket": ticket,
                "occurred_at": when + timedelta(seconds=15),
                "feature": "flow",
                "outcome": "resolved",
            },
        ]
    return events


def test_A4_31_rule_acks_before_resolved_flows_close_at_9000_cents(make_account):
    with time_machine.travel(T0, tick=False):
        account = make_account(slug="shop", plan="basic", addons=[("automate", "automate-30")])
    run_billing(as_of=T0)
    received_at = T0 + timedelta(days=3)
    ingest(account, acked_then_automated(31, T0 + timedelta(days=2)), now=received_at)

    run_billing(as_of=CLOSE_AT)

    counted = Charge.objects.filter(account=account).exclude(status=ChargeStatus.NOT_COUNTED)
    assert counted.filter(meter="helpdesk_tickets").count() == 31
    assert not counted.filter(meter="automated_interactions").exists()
    invoice = Invoice.objects.get(account=account, reason="period_close")
    assert [line.kind for line in invoice.lines.all() if line.kind == "overage"] == []
    # Basic 6,000 + Automate 30 3,000 for the next month; 31 tickets are within Basic's 300.
    assert invoice.total_minor == 9000
    assert (invoice.period_start, invoice.period_end) == (T0, CLOSE_AT)

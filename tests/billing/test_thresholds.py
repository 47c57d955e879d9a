"""Usage threshold emails at 50 %, 80 % and 100 % of each allowance, once per period each; a jump
past several thresholds sends the highest one's email alone."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail

from billing.models import ThresholdNotice
from billing.run import run_billing
from outbox import services as outbox
from outbox.models import Event as OutboxEvent
from tests.billing.test_run_billing import ingest_many, tickets

T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def bill(django_capture_on_commit_callbacks):
    """run_billing, with the emails it queues on commit actually sent."""

    def run(as_of):
        with django_capture_on_commit_callbacks(execute=True):
            return run_billing(as_of=as_of)

    return run


def used(account, n: int, *, day: int, bill) -> None:
    """n more tickets on day `day` of the period (a minute apart), then a billing run."""
    later = T0 + timedelta(days=day, hours=n // 60 + 1)
    ingest_many(account, tickets(n, T0 + timedelta(days=day)), now=later)
    bill(later)


def test_50_80_then_100_percent_emails_once_each_per_period(make_account, partner, bill):
    with time_machine.travel(T0, tick=False):
        account = make_account(slug="shop", plan="basic")  # 300 tickets included
    outbox.endpoint_create(partner=partner, url="https://hooks.example/in")
    bill(T0)
    used(account, 149, day=1, bill=bill)
    assert mail.outbox == []  # 49.7 %: nothing yet
    used(account, 1, day=2, bill=bill)
    [half] = mail.outbox
    assert half.subject == "You have used 50% of your helpdesk tickets this period"
    assert "that reaches 50% of the 300 included" in half.body
    assert "Beyond it, usage is billed at $40.00 per block of 100." in half.body
    used(account, 89, day=3, bill=bill)
    assert len(mail.outbox) == 1  # 79.7 %: the 50 % email was sent, 80 % not reached
    used(account, 1, day=4, bill=bill)
    eighty = mail.outbox[1]
    assert eighty.to == ["billing@shop.example"]
    assert eighty.subject == "You have used 80% of your helpdesk tickets this period"
    assert "You have used 240 helpdesk tickets in the period Nov 1 – Nov 30, 2026" in eighty.body
    assert "that reaches 80% of the 300 included" in eighty.body
    assert "$40.00 per block of 100" in eighty.body
    assert "240" in eighty.alternatives[0][0]
    bill(T0 + timedelta(days=5))
    assert len(mail.outbox) == 2  # once per period
    used(account, 60, day=6, bill=bill)
    assert [m.subject[:20] for m in mail.outbox] == [
        "You have used 50% of",
        "You have used 80% of",
        "You have used 100% o",
    ]
    assert "billed at $40.00 per block of 100 on your next invoice" in mail.outbox[2].body
    sent = OutboxEvent.objects.filter(account=account, type="usage.threshold_reached")
    assert [e.data["threshold_percent"] for e in sent.order_by("sequence")] == [50, 80, 100]


def test_a_jump_from_40_to_110_percent_sends_the_100_percent_email_alone(make_account, bill):
    with time_machine.travel(T0, tick=False):
        account = make_account(slug="shop", plan="basic")  # 300 tickets included
    bill(T0)
    used(account, 120, day=1, bill=bill)
    assert mail.outbox == []  # 40 %
    used(account, 210, day=2, bill=bill)
    assert [m.subject for m in mail.outbox] == [
        "You have used 100% of your helpdesk tickets this period"
    ]
    assert "You have used 330 helpdesk tickets" in mail.outbox[0].body
    # The lower thresholds are told with it: never emailed afterwards in this period.
    used(account, 5, day=3, bill=bill)
    assert len(mail.outbox) == 1
    notices = ThresholdNotice.objects.filter(account=account).values_list("threshold", flat=True)
    assert sorted(notices) == [50, 80, 100]


def test_a_jump_from_60_to_85_percent_sends_the_80_percent_email(make_account, bill):
    with time_machine.travel(T0, tick=False):
        account = make_account(slug="shop", plan="basic")
    bill(T0)
    used(account, 180, day=1, bill=bill)
    used(account, 75, day=2, bill=bill)
    assert [m.subject[:20] for m in mail.outbox] == ["You have used 50% of", "You have used 80% of"]


def test_a_jump_past_100_percent_sends_one_email_not_two(make_account, bill):
    with time_machine.travel(T0, tick=False):
        account = make_account(slug="shop", plan="starter")  # 50 included
    ingest_many(account, tickets(60, T0 + timedelta(days=1)), now=T0 + timedelta(days=2))
    bill(T0 + timedelta(days=2))
    assert [m.subject for m in mail.outbox] == [
        "You have used 100% of your helpdesk tickets this period"
    ]
    assert "$0.40 each" in mail.outbox[0].body

"""Generated account histories billed by run_billing and by the independent reference biller
(tests/billing/reference.py) must agree, invoice by invoice, after every step.

Histories: monthly Starter/Basic/Pro with or without Voice; tickets and calls; late units of
earlier months; upgrades, downgrades and mixed requests at any second of a month; closes at
month ends, each run twice. Checked after every step: every issued invoice matches the
reference (reason, period, total), no issued invoice ever changes, and no period is invoiced
twice. CI runs a fixed corpus (derandomized); `make reference-histories` or
REFERENCE_HISTORIES=<n> runs a longer, random one.
"""

import os
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from billing import changes
from billing.models import Invoice
from billing.run import run_billing
from plans.models import Subscription
from tests.billing import reference
from tests.billing.charges import counted

FIRST = datetime(2026, 10, 1, tzinfo=UTC)
LONG_RUN = int(os.environ.get("REFERENCE_HISTORIES", "0"))
HISTORIES = LONG_RUN or 200


def _invoices(account) -> dict[int, tuple]:
    return {
        invoice.pk: (
            invoice.reason,
            invoice.period_start,
            invoice.total_minor,
            tuple((line.kind, line.amount_minor) for line in invoice.lines.all()),
        )
        for invoice in Invoice.objects.filter(account=account).prefetch_related("lines")
    }


@pytest.mark.django_db
def test_F6_P1_P6_P7_histories_are_billed_as_the_reference_bills_them(make_account, capsys):
    seen = {"histories": 0, "steps": 0, "checks": 0}

    class History(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            seen["histories"] += 1
            self.slug = f"h{seen['histories']}"
            self.opened = False

        @precondition(lambda self: not self.opened)
        @rule(
            plan=st.sampled_from(reference.PLAN_ORDER), tier=st.sampled_from(reference.VOICE_ORDER)
        )
        def open_account(self, plan, tier):
            addons = [("voice", tier)] if tier else []
            with time_machine.travel(FIRST, tick=False):
                self.account = make_account(slug=self.slug, plan=plan, addons=addons)
            run_billing(as_of=FIRST)
            self.model = reference.Account(first=FIRST, plan=plan, tier=tier)
            self.clock = FIRST
            self.issued = _invoices(self.account)
            self.opened = True

        def _month_end(self) -> datetime:
            return reference.month_start(FIRST, self.model.month + 1)

        @precondition(lambda self: self.opened)
        @rule(meter=st.sampled_from(["tickets", "calls"]), units=st.integers(1, 400))
        def use(self, meter, units):
            name = "helpdesk_tickets" if meter == "tickets" else "voice_tickets"
            counted(self.account, name, units, self.clock)
            self.model.count(self.model.month, meter, units)

        @precondition(lambda self: self.opened and self.model.closed)
        @rule(
            back=st.integers(1, 3),
            meter=st.sampled_from(["tickets", "calls"]),
            units=st.integers(1, 300),
        )
        def late(self, back, meter, units):
            month = max(self.model.month - back, 0)
            at = reference.month_start(FIRST, month) + timedelta(days=2, hours=3)
            name = "helpdesk_tickets" if meter == "tickets" else "voice_tickets"
            counted(self.account, name, units, at, recorded_at=self.clock)
            self.model.count(month, meter, units)

        @precondition(lambda self: self.opened)
        @rule(
            plan=st.sampled_from(reference.PLAN_ORDER),
            tier=st.sampled_from(reference.VOICE_ORDER),
            seconds=st.integers(1, 27 * 86400),
        )
        def request(self, plan, tier, seconds):
            model = self.model
            if (plan, tier) == (model.plan, model.tier):
                return  # nothing to change
            if (plan != model.plan and model.scheduled_plan is not None) or (
                tier != model.tier and model.scheduled_tier is not None
            ):
                return  # one pending change per part: what a second one means is not ruled
            at = max(self.clock, reference.month_start(FIRST, model.month)) + timedelta(
                seconds=seconds
            )
            if at >= self._month_end():
                return
            self.clock = at
            now, later = model.change(plan=plan, tier=tier, at=at)
            addons = () if tier == self._tier_in_db() else (("voice", tier),)
            result = changes.subscription_change(
                account=self.account,
                request=changes.ChangeRequest(
                    plan=plan if plan != self._plan_in_db() else None, addons=addons
                ),
                at=at,
            )
            assert result.effective == ("now" if now else "period_end")
            assert bool(result.scheduled) == later

        def _plan_in_db(self) -> str:
            return Subscription.objects.get(account=self.account).plan.code

        def _tier_in_db(self) -> str | None:
            item = Subscription.objects.get(account=self.account).addons.first()
            return item.tier.code if item else None

        @precondition(lambda self: self.opened and self.model.month < 6)
        @rule()
        def close(self):
            end = self._month_end()
            self.clock = end
            run_billing(as_of=end)
            self.model.close()
            again = run_billing(as_of=end)  # running again changes nothing
            assert not [
                i for i in again.invoices if Invoice.objects.get(pk=i).account_id == self.account.pk
            ]

        @invariant()
        def agrees_with_the_reference(self):
            if not self.opened:
                return
            seen["steps"] += 1
            now = _invoices(self.account)
            for pk, issued in self.issued.items():  # an issued invoice never changes (F5)
                assert now[pk] == issued
            self.issued = now
            got = sorted((r, s, t) for r, s, t, _ in now.values())
            assert got == sorted(self.model.invoices)
            closes = [s for r, s, _, _ in now.values() if r == "period_close"]
            assert len(closes) == len(set(closes))  # no period invoiced twice
            seen["checks"] += len(got)

        def teardown(self):
            if self.opened:  # out of the next histories' runs
                Subscription.objects.filter(account=self.account).update(ended_at=self.clock)

    History.TestCase.settings = settings(
        max_examples=HISTORIES,
        stateful_step_count=12,
        deadline=None,
        derandomize=not LONG_RUN,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    History.TestCase().runTest()
    with capsys.disabled():  # counted in the output of every run, CI's included
        print(
            f"\nreference histories: {seen['histories']} histories, {seen['steps']} steps,"
            f" {seen['checks']} invoice checks"
        )
    assert seen["histories"] >= min(HISTORIES, 200)

"""Generated account histories billed by run_billing and by the independent reference biller
(tests/billing/reference.py) must agree, invoice by invoice, after every step.

Histories open on a plan (Starter to Advanced) with any add-on tiers, or on a per-agent edition
(Growth included), monthly or annual, anchored on the 1st, the 29th, 30th or 31st, some across
Feb 29, 2028. Then: units on every meter, late units of earlier months, tickets sent through
ingest and sent again (the same event ids: nothing changes), upgrades, downgrades, mixed
requests, month → year and year → month at any second, a later request replacing a scheduled
one, runs of run_billing inside a month (its last second and Feb 29 included: nothing is
issued), closes at month ends (each run twice), cards that decline and cards that pay. Checked
after every step: every issued invoice matches the reference (reason, period, total), no issued
invoice ever changes, no period is invoiced twice, no invoice is paid twice (and Stripe holds
one successful charge per paid invoice). CI runs a fixed corpus (derandomized);
`make reference-histories` or REFERENCE_HISTORIES=<n> runs a longer, random one.
"""

import os
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from accounts.errors import DomainError
from accounts.models import Account
from billing import changes, payments, spike_guard
from billing.models import Dunning, Invoice, PaymentAttempt, PaymentMethod
from billing.run import run_billing
from metering import event_store, holds
from metering import services as metering_services
from metering.models import Charge, UsageHold
from plans.models import Subscription
from tests.billing import reference
from tests.billing.charges import counted
from tests.metering.helpers import ingest

# Anchors: a plain 1st; month ends that clamp (Jan 31 → Feb 29 → Mar 31, Nov 30 → Feb 29);
# the 29th of a leap February's neighbour; a time of day that is not midnight.
ANCHORS = [
    datetime(2026, 10, 1, tzinfo=UTC),
    datetime(2027, 11, 30, tzinfo=UTC),
    datetime(2028, 1, 31, tzinfo=UTC),
    datetime(2027, 12, 29, 17, 45, tzinfo=UTC),
]
LEAP_DAY = datetime(2028, 2, 29, tzinfo=UTC)
OK, DECLINED = "4242424242424242", "4000000000000341"
LONG_RUN = int(os.environ.get("REFERENCE_HISTORIES", "0"))
HISTORIES = LONG_RUN or 200
tiers = {
    addon: [None, *(code for code, _, _ in spec[2])] for addon, spec in reference.ADDONS.items()
}
PLAN_METERS = [reference.HELPDESK, *(meter for meter, _, _ in reference.ADDONS.values())]


# Tax identities (reference.Buyer): the seller's own country and none, another EU country with
# and without a confirmed VAT id, a registered US state and another, outside the EU.
BUYERS = [
    reference.Buyer(),
    reference.Buyer("FR"),
    reference.Buyer("DE"),
    reference.Buyer("DE", vat_id_valid=True),
    reference.Buyer("FI"),
    reference.Buyer("US", "WA"),
    reference.Buyer("US", "CA"),
    reference.Buyer("GB"),
]


def _identify(account, buyer: reference.Buyer, at: datetime) -> None:
    """Give the account the buyer's billing details; a confirmed VAT id is one the VIES
    stand-in knows as valid, so that re-checks before a close confirm it again."""
    Account.objects.filter(pk=account.pk).update(
        country=buyer.country,
        us_state=buyer.us_state,
        vat_id="DE123456788" if buyer.vat_id_valid else "",
        tax_id_status="valid" if buyer.vat_id_valid else "unchecked",
        tax_id_checked_at=at if buyer.vat_id_valid else None,
    )


def counted_statuses(account, tickets: list[str]) -> list[str]:
    return list(
        Charge.objects.filter(account=account, subject__in=tickets).values_list("status", flat=True)
    )


def _invoices(account) -> dict[int, tuple]:
    return {
        invoice.pk: (
            invoice.reason,
            invoice.period_start,
            invoice.subtotal_minor,
            invoice.tax_minor,
            invoice.total_minor,
            tuple((line.kind, line.amount_minor) for line in invoice.lines.all()),
        )
        for invoice in Invoice.objects.filter(account=account).prefetch_related("lines")
    }


# Every instant of a history is chosen by the history (opening, usage, requests, runs), never
# read from the wall clock: the moved-clock passes of CI skip it (the first pass runs it).
@pytest.mark.clock_free
@pytest.mark.django_db
def test_F6_P1_P4_P6_P7_Z9_F5_histories_are_billed_as_the_reference_bills_them(
    make_account, stripe_standin, vies_standin, eu_seller, capsys
):
    seen = Counter()

    class History(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            seen["histories"] += 1
            if LONG_RUN and seen["histories"] % 100 == 0:  # a long run's progress, as it goes
                os.write(2, f"{dict(seen)}\n".encode())
            self.slug = f"h{seen['histories']}"
            self.opened = False
            self.card = None  # None, OK or DECLINED: the saved card
            self.batches: list[list[dict]] = []
            self.held: dict[int, list[str]] = {}  # the model's hold key -> its tickets
            self.paid_before: set[int] = set()

        # --- opening ---------------------------------------------------------------------

        @precondition(lambda self: not self.opened)
        @rule(
            anchor=st.sampled_from(ANCHORS),
            interval=st.sampled_from(["month", "year"]),
            plan=st.sampled_from(reference.PLAN_ORDER),
            addons=st.fixed_dictionaries({a: st.sampled_from(t) for a, t in tiers.items()}),
            # Two histories in three on a plan: editions have fewer moves (no changes).
            edition=st.sampled_from([None] * 8 + sorted(reference.EDITIONS)),
            agents=st.integers(1, 4),
            buyer=st.sampled_from(BUYERS),
        )
        def open_account(self, anchor, interval, plan, addons, edition, agents, buyer):
            if edition:
                terms = reference.Terms(plan=None, interval=interval, edition=(edition, agents))
            else:
                chosen = tuple(sorted((a, t) for a, t in addons.items() if t))
                terms = reference.Terms(plan=plan, interval=interval, addons=chosen)
            self._open(anchor, terms, buyer)

        def _open(self, anchor, terms, buyer: reference.Buyer = BUYERS[0]):
            code = terms.edition[0] if terms.edition else terms.plan
            with time_machine.travel(anchor, tick=False):
                self.account = make_account(
                    slug=self.slug,
                    plan=code,
                    interval=terms.interval,
                    addons=terms.addons,
                    full_agents=terms.edition[1] if terms.edition else 0,
                )
            _identify(self.account, buyer, anchor)
            run_billing(as_of=anchor)
            self.model = reference.Account(anchor=anchor, terms=terms, buyer=buyer)
            seen[f"buyers in {buyer.country or 'no country'}"] += 1
            self.clock = anchor
            self.issued = _invoices(self.account)
            self.opened = True
            seen["annual" if terms.interval == "year" else "monthly"] += 1
            seen["editions" if terms.edition else "plans"] += 1

        def _month_end(self) -> datetime:
            return self.model.start(self.model.month + 1)

        def _meters(self) -> list[str]:
            return [reference.RESOLUTIONS] if self.model.terms.edition else PLAN_METERS

        # --- usage -----------------------------------------------------------------------

        @precondition(lambda self: self.opened)
        @rule(data=st.data(), units=st.integers(1, 400))
        def use(self, data, units):
            meter = data.draw(st.sampled_from(self._meters()))
            counted(self.account, meter, units, self.clock)
            self.model.count(self.model.month, meter, units)

        @precondition(lambda self: self.opened and self.model.closed)
        @rule(data=st.data(), back=st.integers(1, 3), units=st.integers(1, 300))
        def late(self, data, back, units):
            meter = data.draw(st.sampled_from(self._meters()))
            month = max(self.model.month - back, 0)
            at = self.model.start(month) + timedelta(days=2, hours=3)
            counted(self.account, meter, units, at, recorded_at=self.clock)
            self.model.count(month, meter, units)
            seen["late units"] += units

        @precondition(lambda self: self.opened and not self.model.terms.edition)
        @rule(tickets=st.integers(1, 3), back=st.integers(0, 2))
        def send_tickets(self, tickets, back):
            """Real events through ingest: a customer writes, an agent answers (H1); an
            earlier month's arrive late (F6)."""
            self._send(tickets, back)

        def _send(self, tickets: int, back: int) -> tuple[int, list[str]] | None:
            """Ingest `tickets` tickets of the month `back` months before the open one: the
            month and the tickets, or None when there is no such month (or time) left."""
            month = self.model.month - back
            if back == 0:
                at = self.clock
                if at + timedelta(minutes=1) >= self._month_end():
                    return None
            elif month >= 0:
                at = self.model.start(month) + timedelta(hours=5)
            else:
                return None
            prefix = f"{self.slug}-b{len(self.batches)}"
            batch = []
            for i in range(tickets):
                base = {"ticket": f"{prefix}-{i}", "channel": "email", "type": "message"}
                batch += [
                    base | {"id": f"{prefix}-{i}-c", "author": "customer", "occurred_at": at},
                    base
                    | {
                        "id": f"{prefix}-{i}-a",
                        "author": "agent",
                        "occurred_at": at + timedelta(seconds=30),
                    },
                ]
            self.clock = max(self.clock, at + timedelta(seconds=30))
            result = ingest(self.account, [dict(e) for e in batch], now=self.clock)
            assert result.accepted == len(batch) and result.duplicates == 0
            self.batches.append(batch)
            self.model.count(month, reference.HELPDESK, tickets)
            seen["ingested tickets"] += tickets
            return month, [f"{prefix}-{i}" for i in range(tickets)]

        @precondition(lambda self: self.opened and not self.model.terms.edition)
        @rule(tickets=st.integers(1, 3), back=st.integers(0, 2))
        def held_for_review(self, tickets, back):
            """Tickets the spike guard holds as they arrive (a suspected loop: every meter of
            them), re-evaluated as it does (billing.spike_guard): not billed while held."""
            sent = self._send(tickets, back)
            if sent is None:
                return
            month, ids = sent
            with time_machine.travel(self.clock, tick=False):
                subjects = sorted(
                    holds.holds_create(
                        {(self.account.pk, "ticket", t): "Suspected loop (tests)" for t in ids},
                        at=self.clock,
                    )
                )
                event_store.mark_for_reevaluation(subjects, now=self.clock)
                metering_services.reevaluate(subjects=subjects, as_of=self.clock)
            assert set(counted_statuses(self.account, ids)) == {"held"}
            key = len(self.batches) - 1
            self.held[key] = ids
            self.model.hold(key, month, reference.HELPDESK, tickets, at=self.clock)
            seen["held tickets"] += tickets

        @precondition(lambda self: self.opened and self.model.held)
        @rule(data=st.data())
        def release_held(self, data):
            """The merchant releases held tickets: billed, in their month or late on the next
            close (F6)."""
            self._decide(data, release=True)

        @precondition(lambda self: self.opened and self.model.held)
        @rule(data=st.data())
        def exclude_held(self, data):
            """The merchant excludes held tickets: never billed (accepted ticket disputes)."""
            self._decide(data, release=False)

        def _decide(self, data, *, release: bool) -> None:
            key = data.draw(st.sampled_from(sorted(self.model.held)))
            active = list(
                UsageHold.objects.filter(
                    account=self.account,
                    subject__in=self.held[key],
                    released_at__isnull=True,
                    excluded_at__isnull=True,
                )
            )
            assert len(active) == len(self.held[key])
            with time_machine.travel(self.clock, tick=False):
                if release:
                    spike_guard.holds_release(holds=active, at=self.clock, by="tests")
                else:
                    spike_guard.holds_exclude(holds=active, at=self.clock, by="tests")
            late = self.model.held[key][0] < self.model.month
            (self.model.release if release else self.model.exclude)(key)
            wanted = "final" if release else "excluded"
            assert set(counted_statuses(self.account, self.held[key])) == {wanted}
            seen[
                ("released" if release else "excluded") + (" after the close" if late else "")
            ] += len(self.held[key])

        @precondition(lambda self: self.opened and self.batches)
        @rule(data=st.data())
        def send_again(self, data):
            """The same event ids sent again change nothing (api.md: duplicates)."""
            batch = data.draw(st.sampled_from(self.batches))
            result = ingest(self.account, [dict(e) for e in batch], now=self.clock)
            assert result.accepted == 0 and result.duplicates == len(batch)
            seen["replayed events"] += len(batch)

        # --- changes ---------------------------------------------------------------------

        @precondition(lambda self: self.opened and not self.model.terms.edition)
        @rule(
            asks=st.lists(
                st.tuples(
                    st.none() | st.sampled_from(reference.PLAN_ORDER),
                    st.sampled_from([None, "year", "year", "month"]),  # month → year often
                    st.dictionaries(
                        st.sampled_from(sorted(tiers)),
                        st.sampled_from([None, 1, 2, 3]),
                        max_size=2,
                    ),
                    st.integers(1, 10**7),
                ),
                min_size=1,
                max_size=3,
            )
        )
        def request(self, asks):
            """One to three change requests in the month, at any second: a later one may
            replace what an earlier one scheduled for the same item (P7)."""
            for plan, interval, addons, seconds in asks:
                self._ask(plan, interval, addons, seconds)

        def _ask(self, plan, interval, addons, seconds):
            model = self.model
            wanted = {
                a: (tiers[a][rank] if rank else None)
                for a, rank in addons.items()
                if (tiers[a][rank] if rank else None) != model.terms.tier(a)
            }
            plan = plan if plan != model.terms.plan else None
            interval = interval if interval != model.terms.interval else None
            if not (plan or interval or wanted):
                return  # nothing to change
            left = int((self._month_end() - self.clock).total_seconds())
            if left < 2:
                return
            at = self.clock + timedelta(seconds=1 + seconds % (left - 1))
            self.clock = at
            before = dict(model.scheduled)
            now, later = model.change(plan=plan, interval=interval, addons=wanted, at=at)
            result = changes.subscription_change(
                account=self.account,
                request=changes.ChangeRequest(
                    plan=plan, interval=interval, addons=tuple(wanted.items())
                ),
                at=at,
            )
            assert result.effective == ("now" if now else "period_end")
            assert bool(result.scheduled) == later
            # The same items were replaced as in the reference (the latest request wins).
            asked = {"plan"} if plan else set()
            asked |= {"interval"} if interval else set()
            asked |= {("addon", a) for a in wanted}
            replaced = set()
            for row in result.superseded:
                replaced |= {"plan"} if row.plan_id else set()
                replaced |= {"interval"} if row.interval else set()
                replaced |= {("addon", row.addon.code)} if row.addon_id else set()
            assert replaced & asked == asked & set(before)
            seen["requests"] += 1
            seen["superseded"] += len(result.superseded)
            seen["month → year"] += interval == "year"

        @precondition(lambda self: self.opened and self.model.terms.edition)
        @rule()
        def edition_change_is_an_operators(self):
            with pytest.raises(DomainError):
                changes.subscription_change(
                    account=self.account,
                    request=changes.ChangeRequest(plan="basic"),
                    at=self.clock,
                )

        # --- runs and payments -----------------------------------------------------------

        @precondition(lambda self: self.opened)
        @rule(
            where=st.sampled_from(["last second", "leap day", "any"]), seconds=st.integers(1, 10**7)
        )
        def run_inside_the_month(self, where, seconds):
            """run_billing before the month ends issues nothing."""
            start, end = max(self.clock, self.model.start(self.model.month)), self._month_end()
            at = {
                "last second": end - timedelta(seconds=1),
                "leap day": LEAP_DAY + timedelta(seconds=seconds % 86400),
                "any": start + timedelta(seconds=seconds % int((end - start).total_seconds())),
            }[where]
            if not start <= at < end:
                return
            seen["leap day runs"] += at.date() == LEAP_DAY.date()
            self.clock = at
            self._model_run(at)
            ours = self._ours(run_billing(as_of=at).invoices)
            assert not ours

        def _model_run(self, at: datetime) -> None:
            held = sum(units for _, _, units, _ in self.model.held.values())
            self.model.run(at)
            seen["released after 14 days"] += held - sum(
                units for _, _, units, _ in self.model.held.values()
            )

        def _ours(self, invoice_ids) -> list[int]:
            return list(Invoice.objects.filter(pk__in=invoice_ids, account=self.account))

        @precondition(lambda self: self.opened and self.model.month < 6)
        @rule()
        def close(self):
            end = self._month_end()
            self.clock = end
            self._model_run(end)
            run_billing(as_of=end)
            self.model.close()
            seen["leap day closes"] += end.date() == LEAP_DAY.date()
            again = run_billing(as_of=end)  # running again changes nothing
            assert not self._ours(again.invoices)
            self._settled()

        def _settled(self):
            """With a card that pays, nothing issued is left unpaid after a run or a payment;
            with one that declines, nothing new is paid."""
            for invoice in Invoice.objects.filter(account=self.account, total_minor__gt=0):
                if self.card == OK:
                    assert invoice.status == "paid", (invoice.pk, invoice.status)
                elif self.card == DECLINED:
                    assert invoice.status != "paid" or invoice.pk in self.paid_before

        @precondition(lambda self: self.opened)
        @rule(card=st.sampled_from([OK, DECLINED]))
        def pay(self, card):
            """Save a card and charge every unpaid invoice through the one collection path
            (F1, F3: a decline leaves it past due; a later card pays it, once)."""
            method = stripe_standin.card(card)
            payments.payment_method_set(account=self.account, stripe_payment_method=method)
            self.card = card
            for invoice in Invoice.objects.filter(account=self.account, total_minor__gt=0):
                payments.invoice_charge(invoice_id=invoice.pk, trigger="retry", at=self.clock)
            seen["declined cards" if card == DECLINED else "paying cards"] += 1
            self._settled()

        @invariant()
        def agrees_with_the_reference(self):
            if not self.opened:
                return
            seen["steps"] += 1
            now = _invoices(self.account)
            for pk, issued in self.issued.items():  # an issued invoice never changes (F5)
                assert now[pk] == issued
            self.issued = now
            got = sorted(tuple(figures) for *figures, _ in now.values())
            assert got == sorted(self.model.taxed_invoices())
            closes = [s for r, s, *_ in now.values() if r == "period_close"]
            assert len(closes) == len(set(closes))  # no period invoiced twice
            seen["checks"] += len(got)

        @invariant()
        def no_invoice_is_paid_twice(self):
            if not self.opened or self.card is None:
                return
            succeeded = Counter(
                PaymentAttempt.objects.filter(
                    invoice__account=self.account, status="succeeded"
                ).values_list("invoice_id", flat=True)
            )
            assert all(n == 1 for n in succeeded.values())
            for invoice in Invoice.objects.filter(account=self.account, total_minor__gt=0):
                assert (invoice.status == "paid") == (invoice.pk in succeeded)
            self.paid_before = set(succeeded)

        def teardown(self):
            if not self.opened:
                return
            if self.card is not None:
                # Stripe's side: at most one successful charge per invoice, and one for each
                # paid one.
                customer = payments.customer_ensure(account=self.account)
                numbers = Counter(
                    intent.metadata.to_dict().get("invoice")
                    for intent in stripe_standin.intents()
                    if intent.status == "succeeded" and intent.customer == customer
                )
                # (an invoice of 0 is settled without a charge)
                paid = Invoice.objects.filter(
                    account=self.account, status="paid", total_minor__gt=0
                )
                assert all(n == 1 for n in numbers.values())
                assert set(numbers) == {i.number for i in paid}
                stripe_standin.flush()
                # Out of the next histories' collection sweeps and retry schedules.
                PaymentMethod.objects.filter(account=self.account).update(is_default=False)
                Dunning.objects.filter(invoice__account=self.account).delete()
            Subscription.objects.filter(account=self.account).update(ended_at=self.clock)
            # Out of the next histories' billing runs (which release holds that are due).
            UsageHold.objects.filter(account=self.account).delete()

    History.TestCase.settings = settings(
        max_examples=HISTORIES,
        stateful_step_count=10,
        deadline=None,
        derandomize=not LONG_RUN,
        # A failing history is shrunk to its shortest form unless REFERENCE_SHRINK=0 (a long
        # run then reports the first failure as found, minutes sooner).
        phases=[p for p in Phase if os.environ.get("REFERENCE_SHRINK") != "0" or p != Phase.shrink],
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    History.TestCase().runTest()
    with capsys.disabled():  # counted in the output of every run, CI's included
        print(
            f"\nreference histories: {seen['histories']} histories, {seen['steps']} steps,"
            f" {seen['checks']} invoice checks; "
            + ", ".join(
                f"{seen[k]} {k}"
                for k in (
                    "plans",
                    "editions",
                    "annual",
                    "requests",
                    "month → year",
                    "superseded",
                    "late units",
                    "ingested tickets",
                    "held tickets",
                    "released",
                    "released after the close",
                    "excluded",
                    "excluded after the close",
                    "released after 14 days",
                    "replayed events",
                    "leap day runs",
                    "leap day closes",
                    "declined cards",
                    "paying cards",
                )
            )
        )
    assert seen["histories"] >= min(HISTORIES, 200)


def _held_history(make_account, decide: str) -> tuple[Account, reference.Account]:
    """Basic, monthly from Oct 1: 290 tickets in October, then 20 more held for review on Oct
    20 (a loop); October closes without them; on Nov 3 the merchant decides (`decide`), and
    November closes. Driven on both sides, as the random histories are."""
    anchor = ANCHORS[0]
    terms = reference.Terms(plan="basic", interval="month")
    with time_machine.travel(anchor, tick=False):
        account = make_account(slug="held", plan="basic")
    _identify(account, BUYERS[0], anchor)
    run_billing(as_of=anchor)
    model = reference.Account(anchor=anchor, terms=terms)
    counted(account, reference.HELPDESK, 290, anchor + timedelta(days=2))
    model.count(0, reference.HELPDESK, 290)
    at = anchor + timedelta(days=19)
    events = [
        {
            "id": f"L{i}-{who}",
            "type": "message",
            "ticket": f"L{i}",
            "channel": "email",
            "author": who,
            "occurred_at": at + timedelta(minutes=i, seconds=30 * (who == "agent")),
        }
        for i in range(20)
        for who in ("customer", "agent")
    ]
    ingest(account, events, now=at + timedelta(hours=1))
    model.count(0, reference.HELPDESK, 20)
    tickets = [f"L{i}" for i in range(20)]
    with time_machine.travel(at + timedelta(hours=1), tick=False):
        subjects = sorted(
            holds.holds_create(
                {(account.pk, "ticket", t): "Suspected loop (tests)" for t in tickets},
                at=at + timedelta(hours=1),
            )
        )
        event_store.mark_for_reevaluation(subjects, now=at + timedelta(hours=1))
        metering_services.reevaluate(subjects=subjects, as_of=at + timedelta(hours=1))
    model.hold(0, 0, reference.HELPDESK, 20, at=at + timedelta(hours=1))
    for month in (1, 2):
        end = model.start(month)
        model.run(end)
        run_billing(as_of=end)
        model.close()
        if month == 1:
            decided_at = end + timedelta(days=2)
            active = list(UsageHold.objects.filter(account=account))
            with time_machine.travel(decided_at, tick=False):
                if decide == "release":
                    spike_guard.holds_release(holds=active, at=decided_at, by="tests")
                    model.release(0)
                else:
                    spike_guard.holds_exclude(holds=active, at=decided_at, by="tests")
                    model.exclude(0)
    return account, model


@pytest.mark.clock_free
@pytest.mark.django_db
@pytest.mark.parametrize("decide", ["release", "exclude"])
def test_F6_held_units_decided_after_the_close_are_billed_as_the_reference_bills_them(
    make_account, vies_standin, eu_seller, decide
):
    """October's 310 tickets, 20 of them held through its close: October bills 290 (within
    300), and November bills the 20 as late usage (one block, $40) once released, or nothing
    once excluded, as the reference says."""
    account, model = _held_history(make_account, decide)
    got = sorted(tuple(figures) for *figures, _ in _invoices(account).values())
    assert got == sorted(model.taxed_invoices())
    november = Invoice.objects.get(account=account, reason="period_close", period_start__month=11)
    late = [line for line in november.lines.all() if line.kind == "late_usage"]
    if decide == "release":
        assert [(line.amount_minor, line.description) for line in late] == [
            (4000, "Usage released after review, helpdesk tickets, October 2026: 20 units")
        ]
    else:
        assert late == []

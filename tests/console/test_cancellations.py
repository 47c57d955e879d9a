"""Why merchants cancel, for operators: the reason chosen on the confirmation step is counted on
the figures page (by what became of each cancellation) and shown on the account's page."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from billing import changes
from billing.run import run_billing
from console.figures import cancellations_by_reason

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 11, 1, tzinfo=UTC)
MID, END = T0 + timedelta(days=15), datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
def cancellations(make_account):
    """alpha: too expensive, ended. bravo: too expensive, then undone. charlie: no reason,
    ending. delta: switching, in its own words, ending. echo: never cancels."""
    with time_machine.travel(T0, tick=False):
        shops = {slug: make_account(slug=slug) for slug in ("alpha", "bravo", "charlie", "delta")}
        make_account(slug="echo")
    with time_machine.travel(MID, tick=False):
        changes.subscription_cancel_at_period_end(account=shops["alpha"], reason="too_expensive")
        undone, _ = changes.subscription_cancel_at_period_end(
            account=shops["bravo"], reason="too_expensive"
        )
        changes.scheduled_change_cancel(account=shops["bravo"], change_id=undone.pk)
    with time_machine.travel(END, tick=False):
        run_billing(as_of=END)  # alpha ends; bravo renews
    with time_machine.travel(END + timedelta(days=2), tick=False):
        changes.subscription_cancel_at_period_end(account=shops["charlie"])
        changes.subscription_cancel_at_period_end(
            account=shops["delta"], reason="switching", comment="Moving to a helpdesk in-house."
        )
    return shops


def test_the_figures_count_cancellations_by_reason_and_outcome(cancellations):
    counts = {
        row.reason: (row.ending, row.ended, row.undone, row.total)
        for row in cancellations_by_reason()
    }
    assert counts == {
        "It costs too much": (0, 1, 1, 2),
        "A feature we need is missing": (0, 0, 0, 0),
        "We are moving to another helpdesk": (1, 0, 0, 1),
        "We do not use it enough": (0, 0, 0, 0),
        "We are closing or pausing the business": (0, 0, 0, 0),
        "Another reason": (0, 0, 0, 0),
        "Not given": (1, 0, 0, 1),
    }


def test_the_figures_page_and_the_account_page_show_the_reasons(cancellations, ops):
    with time_machine.travel(END + timedelta(days=3), tick=False):
        figures = ops.get("/console/figures/").content.decode()
        delta = ops.get(f"/console/accounts/{cancellations['delta'].pk}/").content.decode()
        bravo = ops.get(f"/console/accounts/{cancellations['bravo'].pk}/").content.decode()
    assert "Cancellations by reason" in figures
    row = '<tr><td>It costs too much</td><td class="num">0</td><td class="num">1</td>'
    assert row + '<td class="num">1</td><td class="num"><strong>2</strong></td></tr>' in figures
    assert "We are moving to another helpdesk" in delta
    assert "Moving to a helpdesk in-house." in delta and "Ending" in delta
    assert "<td>Dec 31, 2026</td>" in delta  # service until the cycle's last day
    assert "It costs too much" in bravo and "Undone" in bravo

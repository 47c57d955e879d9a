"""The console's held usage (billing.spike_guard): the queue (open spikes and loop holds across
accounts, oldest first, then the recently decided), an operator's Release and Exclude through
`held_anomaly_decide` and `held_loop_decide` (one `operator.usage_*` audit row each), and what
the merchant reads afterwards. Times are fixed instants, never today's date."""

from datetime import timedelta

import pytest

from audit.models import AuditEntry
from metering.models import UsageHold
from tests.billing.test_pages_held_usage import (  # noqa: F401  (the shop, as a fixture)
    CHECKED,
    LOOP,
    WAVE,
    account,
    at,
    looped,
    spiked,
    statuses,
)

pytestmark = pytest.mark.django_db

QUEUE = "/console/held-usage/"
DECIDED = CHECKED + timedelta(hours=2)


@pytest.fixture
def held(account):  # noqa: F811
    """A loop held on Nov 20, then a spike opened on Nov 24: both waiting."""
    looped(account)
    anomaly = spiked(account)
    first = UsageHold.objects.filter(account=account, kind="loop").order_by("held_at", "pk")[0]
    return {"anomaly": anomaly, "loop": first}


def test_the_queue_lists_spikes_and_loops_waiting_with_their_decisions(ops, held):
    with at(DECIDED):
        page = ops.get(QUEUE).content.decode()
    assert 'href="/console/held-usage/"' in page and "Held usage</a>" in page  # the tab
    waiting = page[page.index('id="held-open"') : page.index('id="held-decided"')]
    anomaly, loop = held["anomaly"], held["loop"]
    assert f'id="held-anomaly-{anomaly.pk}"' in waiting
    assert "70 helpdesk tickets on Tue 24 Nov 2026, against a usual 5" in waiting
    assert f'href="/console/held-usage/spikes/{anomaly.pk}/release/"' in waiting
    assert f'href="/console/held-usage/spikes/{anomaly.pk}/exclude/"' in waiting
    row = waiting[waiting.index(f'id="held-loop-{loop.pk}"') :].split("</tr>")[0]
    assert LOOP in row and "<strong>12</strong>" in row
    assert f'href="/console/held-usage/loops/{loop.pk}/exclude/"' in row
    assert "Nothing decided yet." in page


def test_an_operator_releases_a_spike_audited_and_the_merchant_sees_it_decided(
    ops,
    operator,
    act,
    client,
    owner,
    account,  # noqa: F811
    held,
):
    anomaly = held["anomaly"]
    with at(DECIDED):
        confirm = ops.get(f"{QUEUE}spikes/{anomaly.pk}/release/").content.decode()
        assert "Release: 65 helpdesk tickets held from Tue 24 Nov 2026" in confirm
        response = act(f"{QUEUE}spikes/{anomaly.pk}/release/", reason="Real Black Friday rush")
    assert response.status_code == 302 and response["Location"] == QUEUE
    anomaly.refresh_from_db()
    assert anomaly.status == "released" and anomaly.resolved_by == operator.get_username()
    assert statuses(account, "W") == {"final": WAVE}
    (row,) = AuditEntry.objects.filter(action="operator.usage_released")
    assert (row.source, row.actor_id, row.object_label) == (
        "operator",
        operator.pk,
        "helpdesk_tickets 2026-11-24",
    )
    assert row.reason == "Real Black Friday rush"
    assert row.before == {"status": "open", "held": 65} and row.after["status"] == "released"
    assert AuditEntry.objects.filter(action="usage.anomaly_released").count() == 1
    with at(DECIDED):
        queue = ops.get(QUEUE).content.decode()
    assert "Released: 65 held units of helpdesk_tickets 2026-11-24 billed" in queue
    decided = queue[queue.index('id="held-decided"') :]
    assert '<tr data-held="released">' in decided and "olivia" in decided
    assert f'id="held-anomaly-{anomaly.pk}"' not in queue
    client.force_login(owner)
    with at(DECIDED):
        usage = client.get("/billing/shop/usage/").content.decode()
    assert "Released: billed" in usage and "by olivia" in usage


def test_an_operator_excludes_a_loops_tickets_never_billed(ops, operator, act, account, held):  # noqa: F811
    loop = held["loop"]
    with at(DECIDED):
        act(f"{QUEUE}loops/{loop.pk}/exclude/", reason="Vendor auto-responder, confirmed")
    assert statuses(account, "L") == {"excluded": 12}
    (row,) = AuditEntry.objects.filter(action="operator.usage_excluded")
    assert row.actor_id == operator.pk and row.after["held"] == 12
    assert AuditEntry.objects.filter(action="usage.hold_excluded").count() == 12
    assert held["anomaly"].holds.filter(excluded_at__isnull=True).exists()  # the spike waits
    with at(DECIDED):
        queue = ops.get(QUEUE).content.decode()
    assert "Excluded: 12 held units of loop holds from ticket L00 never billed." in queue
    assert '<tr data-held="excluded">' in queue


def test_what_was_decided_meanwhile_is_not_decided_twice(ops, act, account, held):  # noqa: F811
    anomaly, loop = held["anomaly"], held["loop"]
    with at(DECIDED):
        act(f"{QUEUE}spikes/{anomaly.pk}/exclude/", reason="spam wave")
        act(f"{QUEUE}spikes/{anomaly.pk}/release/", reason="changed my mind")
        act(f"{QUEUE}loops/{loop.pk}/release/", reason="real")
        act(f"{QUEUE}loops/{loop.pk}/exclude/", reason="changed my mind")
        page = ops.get(QUEUE).content.decode()
    assert "This spike was excluded already." in page
    assert "These held tickets were decided already." in page
    assert AuditEntry.objects.filter(action__startswith="operator.usage_").count() == 2
    assert statuses(account, "L") == {"final": 12}
    assert statuses(account, "W") == {"final": 5, "excluded": 65}


def test_a_decision_needs_a_reason(ops, act, held):
    with at(DECIDED):
        response = act(f"{QUEUE}spikes/{held['anomaly'].pk}/release/", reason=" ")
    assert response.status_code == 400
    held["anomaly"].refresh_from_db()
    assert held["anomaly"].status == "open"


@pytest.mark.parametrize("who", ["owner", "staff_without_console"])
def test_only_operators_reach_the_queue_and_its_decisions(request, client, who, held):
    client.force_login(request.getfixturevalue(who))
    anomaly, loop = held["anomaly"], held["loop"]
    assert client.get(QUEUE).status_code == 404
    assert client.post(f"{QUEUE}spikes/{anomaly.pk}/release/", {"reason": "x"}).status_code == 404
    assert client.post(f"{QUEUE}loops/{loop.pk}/exclude/", {"reason": "x"}).status_code == 404
    anomaly.refresh_from_db()
    assert anomaly.status == "open"
    assert UsageHold.objects.filter(kind="loop", excluded_at__isnull=True).count() == 12

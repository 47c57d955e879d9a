"""Partners see and decide on the spike guard's held units, and change its settings:
/api/v1/accounts/{slug}/held-usage, .../anomalies/{id}/release|exclude, .../spike-guard; the
usage answer's `held` and `excluded`. Times are fixed instants, never today's date."""

from datetime import datetime, timedelta

import pytest

from audit.models import AuditEntry
from billing import spike_guard
from billing.models import TicketDispute
from metering.models import Charge, SpikeGuard, UsageAnomaly, UsageHold
from outbox.models import Event as OutboxEvent
from tests.billing.test_spike_guard import CHECKED, USUAL, WAVE, at, shop, usual_tuesdays, wave
from tests.billing.test_ticket_disputes import ticket_events
from tests.metering.helpers import ingest

__all__ = ["shop"]  # the fixture, used by name

BASE = "/api/v1/accounts/shop"
LOOPED = CHECKED + timedelta(hours=2)
VENDOR = "noreply@vendor.example"


@pytest.fixture
def spiked(shop):
    """The shop's spam wave of Tuesday 24 November, 360 of its 400 tickets held."""
    usual_tuesdays(shop)
    wave(shop)
    with at(CHECKED):
        spike_guard.spike_guard_tick(as_of=CHECKED)
    return UsageAnomaly.objects.get(account=shop)


def loop(shop, n=12):
    """n tickets from one auto-responder within minutes: the loop detector holds them all."""
    events = []
    for i in range(n):
        events += ticket_events(f"L{i:02}", LOOPED + timedelta(seconds=40 * i), requester=VENDOR)
    with at(LOOPED + timedelta(minutes=15)):
        ingest(shop, events, now=LOOPED + timedelta(minutes=15))


def status_of(shop, ticket):
    return Charge.objects.get(account=shop, subject=ticket, meter="helpdesk_tickets").status


def test_held_usage_lists_the_spike_and_the_loop_grouped_by_reason(spiked, shop, partner_api):
    loop(shop)
    with at(LOOPED + timedelta(hours=1)):
        body = partner_api.get(f"{BASE}/held-usage").json()
    [anomaly] = body["anomalies"]
    assert anomaly == {
        "id": spiked.pk,
        "meter": "helpdesk_tickets",
        "day": "2026-11-24",
        "observed": WAVE,
        "baseline": USUAL,
        "held": WAVE - USUAL,
        "status": "open",
        "message": "400 helpdesk tickets on Tuesday 24 November, against a usual 40 on "
        "Tuesdays (the last 8 weeks). The 360 over the usual are held for review, not billed.",
        "resolved_by": None,
        "opened_at": "2026-11-24T13:00:00Z",
        "resolved_at": None,
    }
    [group] = body["loops"]
    assert group["reason"] == (
        f"Suspected loop: more than 10 tickets from {VENDOR} within 60 minutes."
    )
    assert group["count"] == 12 and group["tickets"] == [f"L{i:02}" for i in range(12)]
    held_at = datetime.fromisoformat(group["held_at"])
    assert datetime.fromisoformat(group["release_after"]) == held_at + timedelta(days=14)
    # The usage answer counts them apart: held, not used.
    with at(LOOPED + timedelta(hours=1)):
        usage = partner_api.get(f"{BASE}/usage").json()["meters"]["helpdesk_tickets"]
    assert usage["held"] == WAVE - USUAL + 12
    assert usage["excluded"] == 0
    assert usage["used"] == 3 * USUAL + USUAL  # November's usual Tuesdays, the wave's first 40


def test_a_partner_releases_a_spike_once(spiked, shop, partner_api):
    url = f"{BASE}/anomalies/{spiked.pk}/release"
    with at(CHECKED + timedelta(hours=1)):
        first = partner_api.post(url, format="json", HTTP_IDEMPOTENCY_KEY="release-1")
        replay = partner_api.post(url, format="json", HTTP_IDEMPOTENCY_KEY="release-1")
        again = partner_api.post(url, format="json")
        exclude = partner_api.post(f"{BASE}/anomalies/{spiked.pk}/exclude", format="json")
    assert first.status_code == 200, first.content
    assert first.json()["status"] == "released" and first.json()["held"] == 0
    assert first.json()["resolved_by"].startswith("API key ")
    assert replay.json() == first.json()
    assert again.status_code == 409 and again.json()["error"]["code"] == "decided"
    assert exclude.status_code == 409 and exclude.json()["error"]["code"] == "decided"
    assert status_of(shop, "W399") == "final"
    assert AuditEntry.objects.filter(action="usage.anomaly_released").count() == 1
    assert OutboxEvent.objects.filter(account=shop, type="usage.anomaly_resolved").count() == 1
    with at(CHECKED + timedelta(hours=1)):
        listed = partner_api.get(f"{BASE}/held-usage").json()["anomalies"]
    assert [(a["id"], a["status"]) for a in listed] == [(spiked.pk, "released")]


def test_a_partner_excludes_a_spike(spiked, shop, partner_api):
    with at(CHECKED + timedelta(hours=1)):
        answer = partner_api.post(f"{BASE}/anomalies/{spiked.pk}/exclude", format="json")
        usage = partner_api.get(f"{BASE}/usage").json()["meters"]["helpdesk_tickets"]
    assert answer.status_code == 200, answer.content
    assert answer.json()["status"] == "excluded"
    assert status_of(shop, "W399") == "excluded"
    assert (usage["held"], usage["excluded"], usage["used"]) == (0, WAVE - USUAL, 4 * USUAL)


def test_another_accounts_anomaly_is_not_found(spiked, make_account, partner_api):
    make_account(slug="other")
    url = f"/api/v1/accounts/other/anomalies/{spiked.pk}/release"
    with at(CHECKED + timedelta(hours=1)):
        answer = partner_api.post(url, format="json")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
    assert UsageAnomaly.objects.get(pk=spiked.pk).status == "open"


def test_loop_tickets_released_and_excluded_by_id(shop, partner_api):
    loop(shop)
    with at(LOOPED + timedelta(hours=1)):
        released = partner_api.post(
            f"{BASE}/held-usage/release",
            {"tickets": ["L00", "L01", "NOPE"]},
            format="json",
            HTTP_IDEMPOTENCY_KEY="loop-release-1",
        )
        excluded = partner_api.post(
            f"{BASE}/held-usage/exclude",
            {"tickets": ["L02", "L00"], "comment": "Their auto-responder"},
            format="json",
        )
        none = partner_api.post(
            f"{BASE}/held-usage/release", {"tickets": ["L00", "NOPE"]}, format="json"
        )
        empty = partner_api.post(f"{BASE}/held-usage/release", {"tickets": []}, format="json")
        left = partner_api.get(f"{BASE}/held-usage").json()["loops"]
    assert released.status_code == 200, released.content
    assert released.json() == {"tickets": ["L00", "L01"], "not_held": ["NOPE"]}
    assert excluded.json() == {"tickets": ["L02"], "not_held": ["L00"]}
    assert none.status_code == 404 and none.json()["error"]["code"] == "not_held"
    assert empty.status_code == 400
    assert [status_of(shop, t) for t in ("L00", "L01", "L02", "L03")] == [
        "final",
        "final",
        "excluded",
        "held",
    ]
    dispute = TicketDispute.objects.get(account=shop, ticket="L02")
    assert (dispute.reason, dispute.status, dispute.comment) == (
        "auto_reply_loop",
        "accepted",
        "Their auto-responder",
    )
    assert [g["count"] for g in left] == [9]
    assert UsageHold.objects.filter(account=shop, released_at__isnull=False).count() == 2


def test_spike_guard_settings_read_and_changed(shop, partner_api):
    url = f"{BASE}/spike-guard"
    assert partner_api.get(url).json() == {
        "mode": "hold",
        "loop_tickets": 10,
        "loop_minutes": 60,
        "anomaly_multiplier": 3,
        "anomaly_margin": 50,
    }
    changed = partner_api.patch(url, {"mode": "alert_only", "loop_tickets": 25}, format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["mode"] == "alert_only" and changed.json()["loop_tickets"] == 25
    assert changed.json()["loop_minutes"] == 60
    row = SpikeGuard.objects.get(account=shop)
    assert (row.mode, row.loop_tickets) == ("alert_only", 25)
    entry = AuditEntry.objects.get(action="spike_guard.settings_changed")
    assert entry.after == {"mode": "alert_only", "loop_tickets": 25}
    assert entry.actor.startswith("API key ")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("loop_tickets", 1),
        ("loop_tickets", 1001),
        ("loop_minutes", 4),
        ("loop_minutes", 1441),
        ("anomaly_multiplier", 1),
        ("anomaly_multiplier", 21),
        ("anomaly_margin", 9),
        ("anomaly_margin", 100_001),
        ("anomaly_margin", "60"),
        ("mode", "ignore"),
    ],
)
def test_settings_out_of_bounds_are_refused_naming_the_field(shop, partner_api, field, value):
    answer = partner_api.patch(f"{BASE}/spike-guard", {field: value}, format="json")
    assert answer.status_code == 400
    assert list(answer.json()["error"]["details"]["fields"]) == [field]
    assert not SpikeGuard.objects.filter(account=shop).exists()


def test_a_read_only_key_reads_but_does_not_decide(spiked, partner):
    from accounts import services as account_services
    from tests.conftest import client_with_key

    _, raw = account_services.api_key_create(partner=partner, scopes=["read"])
    reader = client_with_key(raw)
    with at(CHECKED + timedelta(hours=1)):
        assert reader.get(f"{BASE}/held-usage").status_code == 200
        refused = reader.post(f"{BASE}/anomalies/{spiked.pk}/release", format="json")
        patched = reader.patch(f"{BASE}/spike-guard", {"loop_tickets": 20}, format="json")
    assert refused.status_code == 403 and patched.status_code == 403
    assert UsageAnomaly.objects.get(pk=spiked.pk).status == "open"


def test_old_decided_anomalies_drop_out_of_the_list(spiked, partner_api):
    with at(CHECKED + timedelta(hours=1)):
        spike_guard.anomaly_release(anomaly=spiked)
    with at(CHECKED + timedelta(days=31)):
        assert partner_api.get(f"{BASE}/held-usage").json()["anomalies"] == []

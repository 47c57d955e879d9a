"""Re-evaluation through the database: families, late events, windows, caps, entitlements."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from metering import limits, services
from metering.models import Charge, Entitlement, Event
from plans.models import Subscription

from .helpers import ingest

T0 = datetime(2026, 11, 3, 9, tzinfo=UTC)
H = timedelta(hours=1)


def msg(i, ticket, at, author="customer", channel="email", **extra):
    return {
        "id": i,
        "type": "message",
        "ticket": ticket,
        "occurred_at": at,
        "channel": channel,
        "author": author,
        **extra,
    }


def call(i, ticket, at, outcome="answered", direction="inbound", customer="c1"):
    return {
        "id": i,
        "type": "call",
        "ticket": ticket,
        "occurred_at": at,
        "channel": "phone",
        "direction": direction,
        "outcome": outcome,
        "customer": customer,
    }


def sms(i, ticket, at, author="agent", direction="outbound"):
    return {
        "id": i,
        "type": "sms",
        "ticket": ticket,
        "occurred_at": at,
        "channel": "sms",
        "author": author,
        "direction": direction,
    }


def counted(account, meter):
    return Charge.objects.filter(
        account=account, meter=meter, status__in=["final", "pending"]
    ).count()


@pytest.fixture
def shop(make_account):
    # Subscribed before the events it is sent (earlier events are refused).
    with time_machine.travel(datetime(2026, 11, 1, tzinfo=UTC), tick=False):
        return make_account(
            slug="shop",
            addons=[
                ("voice", "voice-20"),
                ("sms", "sms-20"),
                ("convert", "convert-50"),
                ("automate", "automate-30"),
            ],
        )


def test_H10_one_ticket_on_three_meters_through_the_database(shop):
    ingest(
        shop,
        [
            msg("m1", "T", T0),
            msg("m2", "T", T0 + H, author="agent"),
            call("c1", "T", T0 + 2 * H),
            sms("s1", "T", T0 + 3 * H),
        ],
        now=T0 + 4 * H,
    )
    assert [counted(shop, m) for m in ("helpdesk_tickets", "voice_tickets", "sms_tickets")] == [
        1,
        1,
        1,
    ]


def test_H2_late_events_in_any_order_give_the_same_charges(shop):
    events = [
        msg("m1", "T", T0),
        msg("m2", "T", T0 + H, author="agent"),
        msg("m3", "T", T0 + 2 * H),
        msg("m4", "T", T0 + 3 * H, author="agent"),
    ]
    ingest(shop, [events[3], events[1]], now=T0 + 4 * H)
    ingest(shop, [events[2], events[0]], now=T0 + 5 * H)
    [charge] = Charge.objects.filter(account=shop, meter="helpdesk_tickets")
    assert charge.status == "final" and charge.billable_at == T0 + H


def test_M1_a_merge_in_a_later_batch_keeps_two_billable_voice_tickets(shop):
    ingest(shop, [call("a1", "A", T0), call("b1", "B", T0 + H, customer="c2")], now=T0 + 2 * H)
    ingest(
        shop,
        [
            {
                "id": "mg",
                "type": "ticket_merged",
                "ticket": "B",
                "into": "A",
                "occurred_at": T0 + 3 * H,
            }
        ],
        now=T0 + 4 * H,
    )
    assert counted(shop, "voice_tickets") == 2
    assert set(Charge.objects.filter(meter="voice_tickets").values_list("subject", flat=True)) == {
        "A",
        "B",
    }


def test_M1_events_after_the_merge_apply_to_the_survivor(shop):
    ingest(
        shop,
        [
            msg("a1", "A", T0),
            {
                "id": "mg",
                "type": "ticket_merged",
                "ticket": "A",
                "into": "B",
                "occurred_at": T0 + H,
            },
        ],
        now=T0 + 2 * H,
    )
    # an agent answers on the merged ticket's id after the merge: it counts for B, not A
    ingest(shop, [msg("a2", "A", T0 + 3 * H, author="agent")], now=T0 + 4 * H)
    verdicts = dict(
        Charge.objects.filter(meter="helpdesk_tickets").values_list("subject", "status")
    )
    assert verdicts == {"A": "not_counted", "B": "final"}


def test_A5_pending_until_the_window_closes_then_final(shop):
    automation = {
        "id": "au",
        "type": "automation",
        "ticket": "T",
        "occurred_at": T0,
        "feature": "order_management",
        "outcome": "resolved",
    }
    ingest(shop, [automation], now=T0 + H)
    charge = Charge.objects.get(meter="automated_interactions", subject="T")
    assert charge.status == "pending" and charge.pending_until == T0 + 72 * H
    services.windows_finalize(as_of=T0 + 72 * H - timedelta(seconds=1))
    assert Charge.objects.get(meter="automated_interactions").status == "pending"
    services.windows_finalize(as_of=T0 + 72 * H)
    charge = Charge.objects.get(meter="automated_interactions", subject="T")
    assert charge.status == "final" and charge.billable_at == T0 and "A5" in charge.rules


def test_A4_an_agent_reply_inside_the_window_cancels_the_pending_interaction(shop):
    ingest(
        shop,
        [
            {
                "id": "au",
                "type": "automation",
                "ticket": "T",
                "occurred_at": T0,
                "feature": "flow",
                "outcome": "resolved",
            }
        ],
        now=T0 + H,
    )
    ingest(
        shop,
        [msg("m1", "T", T0 + 2 * H), msg("m2", "T", T0 + 3 * H, author="agent")],
        now=T0 + 4 * H,
    )
    services.windows_finalize(as_of=T0 + 100 * H)
    assert counted(shop, "automated_interactions") == 0
    assert counted(shop, "helpdesk_tickets") == 1


def click(i, session, at):
    return {
        "id": i,
        "type": "campaign_click",
        "session": session,
        "campaign": "bf",
        "occurred_at": at,
    }


def test_C2_clicks_beyond_the_tier_are_recorded_not_billed_and_campaigns_pause(shop):
    clicks = [click(f"k{i}", f"s{i}", T0 + i * timedelta(minutes=1)) for i in range(53)]
    ingest(shop, clicks, now=T0 + H)
    statuses = list(
        Charge.objects.filter(meter="convert_clicks")
        .order_by("billable_at")
        .values_list("status", flat=True)
    )
    assert statuses == ["final"] * 50 + ["capped"] * 3
    capped = Charge.objects.filter(meter="convert_clicks", status="capped").first()
    assert "C2" in capped.rules
    entitlement = Entitlement.objects.get(account=shop, feature="convert_campaigns")
    assert entitlement.state == "paused" and entitlement.until == datetime(2026, 12, 1, tzinfo=UTC)
    assert Event.objects.filter(type="campaign_click").count() == 53  # all recorded
    # the pause ends with the period
    assert limits.entitlements_expire(as_of=datetime(2026, 12, 1, tzinfo=UTC)) == 1
    assert Entitlement.objects.get(account=shop, feature="convert_campaigns").state == "active"


def test_C2_a_late_earlier_click_takes_its_place_in_the_order(shop):
    ingest(shop, [click(f"k{i}", f"s{i}", T0 + i * H) for i in range(50)], now=T0 + 60 * H)
    ingest(shop, [click("early", "s-early", T0 - H)], now=T0 + 61 * H)
    assert Charge.objects.get(subject="s-early").status == "final"
    assert Charge.objects.get(subject="s49").status == "capped"


def resolved_session(i, at):
    """A messaging AI session that counts (Z2) once 72 h pass without activity."""
    base = {"type": "ai_session", "session": f"ai-{i}", "agent_kind": "messaging"}
    return [
        base | {"id": f"{i}-1", "action": "started", "occurred_at": at},
        base | {"id": f"{i}-2", "action": "reply_sent", "occurred_at": at + timedelta(minutes=1)},
        base
        | {
            "id": f"{i}-3",
            "action": "feedback",
            "value": "positive",
            "occurred_at": at + timedelta(minutes=2),
        },
        base
        | {
            "id": f"{i}-4",
            "action": "evaluation",
            "relevant": True,
            "resolved": True,
            "occurred_at": at + timedelta(minutes=3),
        },
    ]


@pytest.fixture
def edition_account(make_account):
    with time_machine.travel(datetime(2026, 11, 1, tzinfo=UTC), tick=False):
        account = make_account(slug="zen", plan="professional", full_agents=1, light_agents=3)
    Subscription.objects.filter(account=account).update(ai_at_limit="pause")
    return account


def test_Z9_pause_caps_resolutions_beyond_the_allocation_and_pauses_ai(edition_account):
    # Professional, 1 full agent, monthly term: 10 resolutions (light agents count for nothing)
    events = [e for i in range(12) for e in resolved_session(i, T0 + i * H)]
    ingest(edition_account, events, now=T0 + 12 * H, as_of=T0 + 100 * H)
    statuses = sorted(
        Charge.objects.filter(meter="automated_resolutions").values_list("status", flat=True)
    )
    assert statuses == ["capped"] * 2 + ["final"] * 10
    ai = Entitlement.objects.get(account=edition_account, feature="ai_agents")
    # The reason is merchant copy: the limit in words, no rule id.
    assert (ai.state, ai.reason) == ("paused", "Automated-resolution limit of 10 reached.")


def test_Z9_the_accounts_own_monthly_limit_pauses_ai_until_next_month(edition_account):
    Subscription.objects.filter(account=edition_account).update(
        ai_at_limit="keep", ai_monthly_limit=3
    )
    events = [e for i in range(5) for e in resolved_session(i, T0 + i * H)]
    ingest(edition_account, events, now=T0 + 5 * H, as_of=T0 + 100 * H)
    assert counted(edition_account, "automated_resolutions") == 3
    ai = Entitlement.objects.get(account=edition_account, feature="ai_agents")
    assert ai.state == "paused" and ai.until == datetime(2026, 12, 1, tzinfo=UTC)


def test_contradictory_session_events_keep_the_batch_going(shop, caplog):
    bad = [
        {
            "id": "x1",
            "type": "ai_session",
            "session": "S",
            "agent_kind": "messaging",
            "action": "started",
            "occurred_at": T0,
        },
        {
            "id": "x2",
            "type": "ai_session",
            "session": "S",
            "agent_kind": "web_widget",
            "action": "started",
            "occurred_at": T0 + H,
        },
    ]
    ingest(shop, bad + [msg("m1", "T", T0), msg("m2", "T", T0 + H, author="agent")], now=T0 + 2 * H)
    assert counted(shop, "helpdesk_tickets") == 1
    assert "Cannot evaluate" in caplog.text

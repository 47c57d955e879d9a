"""simulate_traffic: realistic streams through the real ingest path."""

from datetime import UTC, datetime
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command

from metering import simulator
from metering.models import Charge, Event
from metering.validation import EventIn, validate_event

NOW = datetime(2026, 11, 20, tzinfo=UTC)


def test_generated_events_are_valid_wire_format_and_cover_every_meter():
    events = list(
        simulator.generate(tickets=2000, since=datetime(2026, 11, 1, tzinfo=UTC), now=NOW)
    )
    assert all(isinstance(validate_event(e, now=NOW), EventIn) for e in events)
    kinds = {e["type"] for e in events}
    assert {"message", "call", "sms", "automation", "campaign_click", "ai_session"} <= kinds
    assert all(e["occurred_at"] <= NOW.isoformat() for e in events)


def test_black_friday_brings_more_campaign_traffic():
    def share(profile):
        events = list(
            simulator.generate(
                tickets=3000, since=datetime(2026, 11, 1, tzinfo=UTC), now=NOW, profile=profile
            )
        )
        return sum(e["type"] == "campaign_click" for e in events) / len(events)

    assert share("black_friday") > 1.5 * share("normal")


@time_machine.travel(NOW, tick=False)
def test_command_ingests_and_evaluates_and_is_idempotent(make_account):
    make_account(
        slug="shop",
        addons=[("voice", "voice-20"), ("convert", "convert-50")],
        period_start=datetime(2026, 11, 1, tzinfo=UTC),
    )
    out = StringIO()
    call_command("simulate_traffic", "--account", "shop", "--tickets", "300", stdout=out)
    stored = Event.objects.count()
    assert f"{stored} accepted" in out.getvalue()
    meters = set(Charge.objects.exclude(status="not_counted").values_list("meter", flat=True))
    assert {"helpdesk_tickets", "voice_tickets", "convert_clicks"} <= meters
    again = StringIO()
    call_command("simulate_traffic", "--account", "shop", "--tickets", "300", stdout=again)
    assert f"0 accepted, {stored} duplicates" in again.getvalue()


def test_command_refuses_an_unknown_account(db):
    with pytest.raises(CommandError, match="No account"):
        call_command("simulate_traffic", "--account", "nope", "--tickets", "5")

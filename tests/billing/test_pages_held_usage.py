"""Units held for review on the Billing & Usage pages (billing.spike_guard): the banner of every
tab, the Usage tab's held units and "Held for review" card, releasing and excluding a spike or a
loop's tickets, "Why was this billed?" of a held ticket, the spike-guard settings, and who may
decide. Times are fixed instants, never today's date."""

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from audit.models import AuditEntry
from billing import spike_guard
from billing.run import run_billing
from metering.models import Charge, SpikeGuard, UsageAnomaly, UsageDay, UsageHold
from tests.billing.test_spike_guard import CHECKED, OPENED, at, usual_tuesdays, wave
from tests.billing.test_ticket_disputes import ticket_events
from tests.metering.helpers import ingest

USAGE = "/billing/shop/usage/"
LOOKED = CHECKED + timedelta(minutes=30)
USUAL, WAVE = 5, 70  # the bar: max(3 × 5, 5 + 50) = 55 tickets; 70 is over it
SPIKE_WORDS = "70 helpdesk tickets on Tue 24 Nov, against a usual 5 on Tuesdays"
LOOP_AT = datetime(2026, 11, 20, 9, tzinfo=UTC)
LOOP = "Suspected loop: more than 10 tickets from noreply@vendor.example within 60 minutes."


@pytest.fixture
def account(make_account):
    """The shop (Basic: 300 helpdesk tickets included), opened on Tuesday Sep 1."""
    with at(OPENED):
        shop = make_account(slug="shop", plan="basic")
        run_billing(as_of=OPENED)
    return shop


def spiked(shop) -> UsageAnomaly:
    """5 tickets on each Tuesday before, 70 on Tue Nov 24; November already over its 300
    (a busy Monday the 2nd), so the spike costs money: 65 held."""
    usual_tuesdays(shop, units=USUAL)
    UsageDay.objects.create(
        account=shop,
        period_start=datetime(2026, 11, 1, tzinfo=UTC),
        meter="helpdesk_tickets",
        day=datetime(2026, 11, 2).date(),
        status="final",
        units=400,
    )
    wave(shop, n=WAVE)
    with at(CHECKED):
        spike_guard.spike_guard_tick(as_of=CHECKED)
    return UsageAnomaly.objects.get(account=shop)


def looped(shop, n: int = 12) -> None:
    """n tickets in 12 minutes from an auto-responder, each answered by an agent: a loop."""
    events = []
    for i in range(n):
        events += ticket_events(
            f"L{i:02}", LOOP_AT + timedelta(minutes=i), requester="noreply@vendor.example"
        )
    with at(LOOP_AT + timedelta(hours=1)):
        ingest(shop, events, now=LOOP_AT + timedelta(hours=1))


def statuses(shop, prefix: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    rows = Charge.objects.filter(account=shop, meter="helpdesk_tickets", subject__startswith=prefix)
    for status in rows.values_list("status", flat=True):
        counts[status] = counts.get(status, 0) + 1
    return counts


@pytest.fixture
def logged_in(client, owner):
    client.force_login(owner)
    return client


def get(client, path, moment=LOOKED):
    with at(moment):
        response = client.get(path, follow=True)
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def post(client, path, moment=LOOKED, **data):
    with at(moment):
        return client.post(path, {"form_token": uuid.uuid4().hex, **data})


def decide(client, moment=LOOKED, **data):
    return post(client, f"{USAGE}held", moment, **data)


def text(page: str) -> str:
    """The page's words, without tags and runs of blanks."""
    return " ".join(re.sub(r"<[^>]+>", " ", page).split())


def banners(page: str) -> list[str]:
    return [
        text(b) for b in re.findall(r'<div class="banner[^"]*held-banner".*?</div>', page, re.S)
    ]


def card(page: str) -> str:
    start = page.index('<section class="card" id="held">')
    return page[start : page.index("</section>", start)]


def test_an_open_spike_is_said_on_every_tab_with_a_link_to_review_it(logged_in, account):
    assert banners(get(logged_in, USAGE)) == []
    spiked(account)
    for path in ("/billing/shop/", USAGE, "/billing/shop/invoices/", "/billing/shop/plan/"):
        page = get(logged_in, path)
        assert banners(page) == [
            f"{SPIKE_WORDS}: 65 are held for review, not billed. Review them"
        ], path
        assert 'href="/billing/shop/usage/#held">Review them</a>' in page


def test_held_units_are_shown_apart_and_listed_with_release_and_exclude(logged_in, account):
    anomaly = spiked(account)
    page = get(logged_in, USAGE)
    meter = text(page[page.index('id="meter-helpdesk_tickets"') : page.index("</section>")])
    assert "Held for review 65 — not billed, not in the forecast" in meter
    held = card(page)
    row = text(held[held.index(f'id="anomaly-{anomaly.pk}"') :].split("</tr>")[0])
    assert "Helpdesk tickets Tue 24 Nov 2026 70 5 on Tuesdays, last 8 weeks 65" in row
    assert "released automatically on Dec 8, 2026" in row  # 14 days after the check
    form = held[held.index('class="inline held-decide"') :]
    assert 'name="csrfmiddlewaretoken"' in form and 'name="form_token"' in form
    assert f'name="anomaly" value="{anomaly.pk}"' in form
    assert 'value="release"' in form and 'value="exclude"' in form
    assert "on the next invoice if this period is closed" in text(held)


def test_the_owner_releases_a_spike_it_is_billed_and_said_decided(logged_in, owner, account):
    anomaly = spiked(account)
    assert statuses(account, "W") == {"final": USUAL, "held": WAVE - USUAL}
    response = decide(logged_in, anomaly=anomaly.pk, decision="release")
    assert response.status_code == 302 and response["Location"] == f"{USAGE}#held"
    anomaly.refresh_from_db()
    assert anomaly.status == "released" and anomaly.resolved_by == "owner@shop.example"
    assert statuses(account, "W") == {"final": WAVE}
    [row] = AuditEntry.objects.filter(action="usage.anomaly_released")
    assert (row.source, row.actor_id) == ("merchant", owner.pk)
    assert AuditEntry.objects.filter(action="usage.hold_released").count() == WAVE - USUAL
    page = get(logged_in, USAGE)
    assert "Released: 65 helpdesk tickets billed, on this period" in text(page)
    assert banners(page) == []
    assert "Nothing is held for review." in text(card(page))
    decided = text(card(page)[card(page).index('class="held-decided"') :])
    assert f"Released: billed Spike: {SPIKE_WORDS} (65 held)" in decided
    assert "by owner@shop.example" in decided
    # Sent again (another tab, an old page): said, never decided twice.
    decide(logged_in, anomaly=anomaly.pk, decision="exclude")
    assert "This spike was released already." in text(get(logged_in, USAGE))
    assert statuses(account, "W") == {"final": WAVE}


def test_the_owner_excludes_a_spike_it_is_never_billed(logged_in, account):
    anomaly = spiked(account)
    decide(logged_in, anomaly=anomaly.pk, decision="exclude")
    anomaly.refresh_from_db()
    assert anomaly.status == "excluded"
    assert statuses(account, "W") == {"final": USUAL, "excluded": WAVE - USUAL}
    assert AuditEntry.objects.filter(action="usage.anomaly_excluded").count() == 1
    page = get(logged_in, USAGE)
    assert "Excluded: 65 helpdesk tickets never billed." in text(page)
    assert "Excluded: never billed Spike:" in text(card(page))
    assert banners(page) == []


def test_a_loops_tickets_are_grouped_by_reason_and_released_or_excluded_together(
    logged_in, account
):
    looped(account)
    assert statuses(account, "L") == {"held": 12}
    page = get(logged_in, USAGE)
    assert banners(page) == [
        "12 tickets of a suspected loop are held for review, not billed. Review them"
    ]
    held = card(page)
    first = UsageHold.objects.filter(account=account).order_by("held_at", "pk").first()
    row = held[held.index(f'id="loop-{first.pk}"') :].split("</tr>")[0]
    assert LOOP in text(row) and "<strong>12</strong>" in row
    assert re.findall(r"ticket=(L\d+)#holds", row) == ["L00", "L01", "L02", "L03", "L04"]
    assert 'href="/billing/shop/usage/why/?ticket=L00#holds"' in row
    assert f'name="hold" value="{first.pk}"' in row
    decide(logged_in, hold=first.pk, decision="exclude")
    assert statuses(account, "L") == {"excluded": 12}
    assert AuditEntry.objects.filter(action="usage.hold_excluded").count() == 12
    page = get(logged_in, USAGE)
    assert "Excluded: 12 tickets never billed." in text(page)
    assert f"Excluded: never billed {LOOP} (12 held)" in text(card(page))
    decide(logged_in, hold=first.pk, decision="release")
    assert "These tickets were decided already: nothing more to do." in text(get(logged_in, USAGE))
    assert statuses(account, "L") == {"excluded": 12}


def test_why_says_a_ticket_is_held_then_who_released_it(logged_in, account):
    looped(account)
    why = f"{USAGE}why/?ticket=L03"
    page = text(get(logged_in, why))
    assert f"Helpdesk tickets: held for review, not billed: {LOOP}" in page
    assert f"Held for review: {LOOP} Released by itself on Dec 4, 2026 unless you decide" in page
    first = UsageHold.objects.filter(account=account).order_by("held_at", "pk").first()
    decide(logged_in, hold=first.pk, decision="release")
    assert statuses(account, "L") == {"final": 12}
    page = text(get(logged_in, why))
    assert "Released on Nov 24, 2026 by owner@shop.example: billed." in page
    assert "held for review, not billed" not in page


def test_a_spike_released_after_14_days_says_so_without_a_name(logged_in, account):
    anomaly = spiked(account)
    later = CHECKED + timedelta(days=14)
    with at(later):
        spike_guard.spike_guard_tick(as_of=later)
    anomaly.refresh_from_db()
    assert anomaly.status == "released"
    decided = text(card(get(logged_in, USAGE, later)))
    assert "automatically after 14 days" in decided and "by automatically" not in decided


def test_alert_only_spikes_of_this_period_get_an_informational_banner(logged_in, account):
    SpikeGuard.objects.create(account=account, mode="alert_only")
    anomaly = spiked(account)
    assert anomaly.status == "alerted"
    page = get(logged_in, USAGE)
    assert banners(page) == [f"{SPIKE_WORDS}: billed, as your settings say (alert only)."]
    assert "banner info held-banner" in page
    assert "Nothing is held for review." in text(card(page))
    # The next period's pages no longer carry it.
    assert banners(get(logged_in, USAGE, datetime(2026, 12, 3, tzinfo=UTC))) == []


def test_the_settings_form_shows_the_defaults_and_saves_with_an_audit_row(
    logged_in, owner, account
):
    page = card(get(logged_in, USAGE))
    assert 'id="spike-guard"' in page
    assert 'name="loop_tickets" value="10"' in page and 'name="anomaly_margin" value="50"' in page
    assert "Default 10; between 2 and 1,000 tickets." in text(page)
    assert "Default 3; between 2 and 20 times." in text(page)
    response = post(
        logged_in,
        f"{USAGE}spike-guard",
        mode="alert_only",
        loop_tickets="25",
        loop_minutes="30",
        anomaly_multiplier="4",
        anomaly_margin="200",
    )
    assert response.status_code == 302 and response["Location"] == f"{USAGE}#spike-guard"
    saved = SpikeGuard.objects.get(account=account)
    assert (saved.mode, saved.loop_tickets, saved.loop_minutes) == ("alert_only", 25, 30)
    assert (saved.anomaly_multiplier, saved.anomaly_margin) == (4, 200)
    [row] = AuditEntry.objects.filter(action="spike_guard.settings_changed")
    assert row.actor_id == owner.pk and row.account_id == account.pk
    assert row.before["loop_tickets"] == 10 and row.after["loop_tickets"] == 25
    page = get(logged_in, USAGE)
    assert "Saved: the spike guard uses these settings from now on." in text(page)
    assert 'name="loop_tickets" value="25"' in page


def test_settings_out_of_bounds_come_back_saying_what_to_fix(logged_in, account):
    response = post(
        logged_in,
        f"{USAGE}spike-guard",
        mode="hold",
        loop_tickets="1",
        loop_minutes="2000",
        anomaly_multiplier="three",
        anomaly_margin="",
    )
    assert response.status_code == 400
    page = text(response.content.decode())
    assert "Please fix what is marked below." in page
    assert "At least 2 tickets. Between 2 and 1,000 tickets." in page
    assert "At most 1,440 minutes. Between 5 and 1,440 minutes." in page
    assert "A whole number. Between 2 and 20 times." in page
    assert "Give a number. Between 10 and 100,000 units." in page
    assert 'value="2000"' in response.content.decode()  # what was typed stays, to correct
    response = post(logged_in, f"{USAGE}spike-guard", loop_tickets="10")
    assert response.status_code == 400
    assert "Choose hold or alert only." in text(response.content.decode())
    assert not SpikeGuard.objects.exists()
    assert not AuditEntry.objects.filter(action="spike_guard.settings_changed").exists()


def test_a_teammate_without_billing_rights_sees_but_cannot_decide(client, teammate, account):
    anomaly = spiked(account)
    client.force_login(teammate)
    page = get(client, USAGE)
    assert banners(page)  # told, as everyone
    held = card(page)
    assert "An owner or admin decides." in held
    assert "held-decide" not in held and 'action="/billing/shop/usage/spike-guard"' not in held
    assert "Loops: more than 10 tickets within 60 minutes." in text(held)
    assert decide(client, anomaly=anomaly.pk, decision="exclude").status_code == 403
    response = post(
        client,
        f"{USAGE}spike-guard",
        mode="alert_only",
        loop_tickets="25",
        loop_minutes="30",
        anomaly_multiplier="4",
        anomaly_margin="200",
    )
    assert response.status_code == 403
    anomaly.refresh_from_db()
    assert anomaly.status == "open" and not SpikeGuard.objects.exists()


def test_another_accounts_spike_is_not_found(logged_in, make_account, account):
    with at(OPENED):
        other = make_account(slug="other", plan="basic")
    theirs = spiked(other)
    response = decide(logged_in, anomaly=theirs.pk, decision="exclude")
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == "open"

"""An account's spike-guard settings (billing.spike_guard.spike_guard_settings_save): bounds
named by field, only the given settings change, one audit row naming what changed."""

import pytest

from accounts.errors import DomainError
from audit.models import AuditEntry
from billing import spike_guard
from metering.models import SpikeGuard


def test_defaults_until_saved(make_account):
    account = make_account(slug="shop")
    rule = spike_guard.spike_guard_settings(account=account)
    assert (rule.mode, rule.loop_tickets, rule.loop_minutes) == ("hold", 10, 60)
    assert (rule.anomaly_multiplier, rule.anomaly_margin) == (3, 50)
    assert not SpikeGuard.objects.filter(account=account).exists()


def test_saving_some_settings_keeps_the_others_and_audits_the_change(make_account):
    account = make_account(slug="shop")
    spike_guard.spike_guard_settings_save(account=account, loop_tickets=25, mode="alert_only")
    spike_guard.spike_guard_settings_save(account=account, anomaly_margin=200)
    rule = SpikeGuard.objects.get(account=account)
    assert (rule.mode, rule.loop_tickets, rule.loop_minutes) == ("alert_only", 25, 60)
    assert (rule.anomaly_multiplier, rule.anomaly_margin) == (3, 200)
    entries = list(AuditEntry.objects.filter(action="spike_guard.settings_changed").order_by("pk"))
    assert [(e.before, e.after) for e in entries] == [
        ({"mode": "hold", "loop_tickets": 10}, {"mode": "alert_only", "loop_tickets": 25}),
        ({"anomaly_margin": 50}, {"anomaly_margin": 200}),
    ]
    assert entries[0].account_id == account.pk
    # Saving the same values again changes nothing and writes no row.
    spike_guard.spike_guard_settings_save(account=account, anomaly_margin=200)
    assert AuditEntry.objects.filter(action="spike_guard.settings_changed").count() == 2


@pytest.mark.parametrize(
    ("field", "refused", "accepted"),
    [
        ("loop_tickets", [1, 1001], [2, 1000]),
        ("loop_minutes", [4, 1441], [5, 1440]),
        ("anomaly_multiplier", [1, 21], [2, 20]),
        ("anomaly_margin", [9, 100_001], [10, 100_000]),
    ],
)
def test_each_setting_is_bounded_and_a_refusal_names_its_field(
    make_account, field, refused, accepted
):
    account = make_account(slug="shop")
    for value in [*refused, None, "12", True]:
        with pytest.raises(DomainError) as refusal:
            spike_guard.spike_guard_settings_save(account=account, **{field: value})
        assert refusal.value.details == {"field": field}
    assert not AuditEntry.objects.filter(action="spike_guard.settings_changed").exists()
    for value in accepted:
        assert (
            getattr(spike_guard.spike_guard_settings_save(account=account, **{field: value}), field)
            == value
        )


def test_mode_is_hold_or_alert_only(make_account):
    account = make_account(slug="shop")
    with pytest.raises(DomainError) as refusal:
        spike_guard.spike_guard_settings_save(account=account, mode="ignore")
    assert refusal.value.details == {"field": "mode"}

"""Input at the edge in the operators' commands (issue 22, item 6): dates in the window, names
without control or bidi characters, account slugs in any case."""

import pytest
from django.core.management import CommandError, call_command

from accounts.models import ApiKey, Partner


@pytest.mark.parametrize(
    "args",
    [
        ["--partner", "Acme", "--expires", "0001-01-01T00:00:00Z"],
        ["--partner", "Acme", "--expires", "9999-12-31T23:59:59-01:00"],
    ],
)
def test_create_api_key_refuses_an_expiry_outside_the_window(db, args):
    with pytest.raises(CommandError, match="the accepted window: from 2000-01-01T00:00:00Z"):
        call_command("create_api_key", *args)
    assert not ApiKey.objects.exists()


def test_create_api_key_refuses_a_partner_or_key_name_with_a_bidi_override(db):
    with pytest.raises(CommandError, match=r"U\+202E \(RIGHT-TO-LEFT OVERRIDE\)"):
        call_command("create_api_key", "--partner", "Acme\u202eCo")
    with pytest.raises(CommandError, match=r"U\+001B"):
        call_command("create_api_key", "--partner", "Acme", "--name", "\x1b[31mred")
    assert not ApiKey.objects.exists()
    assert list(Partner.objects.values_list("name", flat=True)) == ["Acme"]


def test_create_api_key_finds_an_account_by_its_slug_in_any_case(account, capsys):
    call_command("create_api_key", "--partner", account.partner.name, "--account", "SHOP")
    assert ApiKey.objects.get().account == account


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("run_billing", ["--as-of", "0001-01-01T00:00:00Z"]),
        ("reconcile_stripe", ["--since", "0001-01-01"]),
        ("reconcile_stripe", ["--since", "2026-11-01", "--until", "9999-12-31"]),
    ],
)
def test_billing_commands_refuse_a_date_outside_the_window(db, command, args):
    with pytest.raises(CommandError, match="the accepted window: from 2000-01-01T00:00:00Z"):
        call_command(command, *args)

"""The console's "Unlock logins" (issue 22, item 1): an account page shows its members locked out
by wrong passwords, and an operator lets them in again at once, with a reason in the audit log."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client

from accounts.models import Membership
from audit.models import AuditEntry

pytestmark = pytest.mark.django_db

T = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
LIMIT = 10


@pytest.fixture(autouse=True)
def fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def shop(make_account, django_user_model):
    account = make_account(slug="shop")
    for username in ("owner@shop.example", "agent@shop.example"):
        user = django_user_model.objects.create_user(username, password="pw-right-123")
        Membership.objects.create(user=user, account=account, role=Membership.Role.OWNER)
    return account


def log_in(username, password, address="203.0.113.7"):
    client = Client()
    response = client.post(
        "/login/", {"username": username, "password": password}, REMOTE_ADDR=address
    )
    return response.status_code


def lock_out(username):
    for _ in range(LIMIT):
        log_in(username, "wrong-guess")


def test_the_account_page_lists_locked_members_and_offers_the_unlock(ops, shop):
    with time_machine.travel(T, tick=False):
        page = ops.get(f"/console/accounts/{shop.pk}/").content.decode()
        assert "Locked-out logins" not in page and "Unlock logins" not in page
        lock_out("owner@shop.example")
        page = ops.get(f"/console/accounts/{shop.pk}/").content.decode()
    assert "Locked-out logins" in page and "Unlock logins" in page
    assert "owner@shop.example" in page and "2026-11-03 09:45" in page  # the lock's end
    assert "agent@shop.example" not in page


def test_unlock_logins_lets_the_member_in_now_and_is_audited(act, ops, shop):
    with time_machine.travel(T, tick=False):
        lock_out("owner@shop.example")
        assert log_in("owner@shop.example", "pw-right-123", "198.51.100.20") == 429
        confirm = ops.get(f"/console/accounts/{shop.pk}/unlock-logins/")
        assert confirm.status_code == 200 and b"a password guesser" in confirm.content
    with time_machine.travel(T + timedelta(minutes=1), tick=False):
        response = act(
            f"/console/accounts/{shop.pk}/unlock-logins/", reason="owner called, identity checked"
        )
        assert response.status_code == 302
        assert log_in("owner@shop.example", "pw-right-123", "198.51.100.20") == 302
    row = AuditEntry.objects.get(action="operator.unlock_logins")
    assert (row.source, row.actor, row.account_id) == ("operator", "olivia", shop.pk)
    assert row.after == ["owner@shop.example"]
    assert row.reason == "owner called, identity checked"


def test_unlocking_with_nobody_locked_says_so_and_records_nothing(act, ops, shop):
    with time_machine.travel(T, tick=False):
        response = act(f"/console/accounts/{shop.pk}/unlock-logins/", reason="just in case")
        assert response.status_code == 302
        page = ops.get(response["Location"]).content.decode()
    assert "nothing to unlock" in page
    assert not AuditEntry.objects.filter(action="operator.unlock_logins").exists()


def test_a_member_of_another_account_stays_locked(act, shop, make_account, django_user_model):
    other = make_account(slug="elsewhere")
    stranger = django_user_model.objects.create_user("owner@else.example", password="pw-x-12345")
    Membership.objects.create(user=stranger, account=other, role=Membership.Role.OWNER)
    with time_machine.travel(T, tick=False):
        lock_out("owner@else.example")
        lock_out("owner@shop.example")
        act(f"/console/accounts/{shop.pk}/unlock-logins/", reason="owner called")
        assert log_in("owner@shop.example", "pw-right-123", "198.51.100.20") == 302
        assert log_in("owner@else.example", "pw-x-12345", "198.51.100.20") == 429

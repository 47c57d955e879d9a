"""The login history (issue 26, card disputes' evidence): every successful login is kept with
its time, the client's address and browser, for 400 days; failures stay axes'."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client

from accounts import tasks
from accounts.models import LoginRecord
from accounts.services import login_record

T = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
HOME, OFFICE = "203.0.113.7", "198.51.100.20"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def member(django_user_model):
    return django_user_model.objects.create_user("owner@shop.example", password="pw-owner-123")


def log_in(password: str, **meta):
    return Client().post(
        "/login/", {"username": "owner@shop.example", "password": password}, **meta
    )


def history(user) -> list[tuple]:
    return list(
        LoginRecord.objects.filter(user=user)
        .order_by("at")
        .values_list("at", "ip_address", "user_agent")
    )


@pytest.mark.parametrize("page", ["/login/", "/admin/login/"])
def test_a_login_is_kept_with_its_time_address_and_browser(member, page):
    member.is_staff = True  # the admin lets staff in; its login is kept alike
    member.save(update_fields=["is_staff"])
    with time_machine.travel(T, tick=False):
        response = Client().post(
            page,
            {"username": "owner@shop.example", "password": "pw-owner-123"},
            REMOTE_ADDR=HOME,
            HTTP_USER_AGENT=FIREFOX,
        )
    assert response.status_code == 302
    assert history(member) == [(T, HOME, FIREFOX)]


def test_a_wrong_password_is_not_a_login(member):
    assert log_in("wrong-guess", REMOTE_ADDR=HOME).status_code == 200
    assert history(member) == []


def test_behind_a_proxy_the_client_address_is_kept_not_the_proxys(member, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    with time_machine.travel(T, tick=False):
        log_in("pw-owner-123", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=f"192.0.2.1, {OFFICE}")
    assert history(member) == [(T, OFFICE, "")]


def test_a_browser_that_names_itself_at_length_is_cut_to_255(member):
    log_in("pw-owner-123", REMOTE_ADDR=HOME, HTTP_USER_AGENT="A" * 4000)
    [(_, _, user_agent)] = history(member)
    assert user_agent == "A" * 255


def test_the_test_clients_login_is_kept_too(member):
    # Client.login() and force_login() both go through django.contrib.auth.login, which sends
    # user_logged_in; neither request has an address.
    with time_machine.travel(T, tick=False):
        assert Client().login(username="owner@shop.example", password="pw-owner-123")
        Client().force_login(member)
    assert history(member) == [(T, None, ""), (T, None, "")]


def test_logins_older_than_400_days_are_pruned_daily(member):
    for age in (401, 400, 399, 1):
        login_record(user=member, ip_address=HOME, user_agent=FIREFOX, at=T - timedelta(days=age))
    with time_machine.travel(T, tick=False):
        assert tasks.login_records_prune_task() == 1
        assert tasks.login_records_prune_task() == 0  # run twice: nothing more
    kept = [at for at, _, _ in history(member)]
    assert kept == [T - timedelta(days=age) for age in (400, 399, 1)]


def test_the_prune_is_on_the_beat_schedule(settings):
    schedule = {
        entry["task"]: entry["schedule"] for entry in settings.CELERY_BEAT_SCHEDULE.values()
    }
    assert schedule[tasks.login_records_prune_task.name] == 86400.0

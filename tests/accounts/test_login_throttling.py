"""Login throttling (issue 22, item 1): wrong passwords lock the account and the address for the
cool-off, on the portal's /login/ and on the admin's login alike; the lockout page says what
happened and when to come back; an operator can unlock at once (docs/deploy.md, "Security")."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from axes.models import AccessAttempt
from django.core.management import call_command
from django.test import Client, RequestFactory

from accounts import logins

T = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
LIMIT = 10  # the settings' default: LOGIN_FAILURE_LIMIT
COOL_OFF = timedelta(minutes=15)  # LOGIN_COOLOFF_MINUTES
HOME, OFFICE = "203.0.113.7", "198.51.100.20"
LOGIN_PAGES = ["/login/", "/admin/login/"]


@pytest.fixture(autouse=True)
def fast_hashing(settings):
    # Dozens of logins per test: PBKDF2 would be most of the run (set before users are made).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff(db, django_user_model):
    """A staff member: the admin lets them in, the portal's login too."""
    return django_user_model.objects.create_user("olivia", password="pw-olivia-123", is_staff=True)


@pytest.fixture
def other_staff(db, django_user_model):
    return django_user_model.objects.create_user("omar", password="pw-omar-123", is_staff=True)


def log_in(client, page, username, password, address=HOME):
    return client.post(page, {"username": username, "password": password}, REMOTE_ADDR=address)


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def lock(page, username, address=HOME):
    """Wrong passwords up to the limit: the last one already answers with the lockout page."""
    client = Client()
    for attempt in range(1, LIMIT + 1):
        response = log_in(client, page, username, "wrong-guess", address)
        if attempt < LIMIT:
            assert response.status_code == 200, attempt  # the form again, with its error
            assert b"correct username and password" in response.content
    assert response.status_code == 429
    return response


def assert_lockout_page(response, *, ends_at: datetime):
    assert response.status_code == 429
    page = response.content.decode()
    assert "Too many failed logins" in page
    assert f"Try again after <strong>{ends_at:%H:%M} UTC</strong>" in page
    assert "even with the right password" in page
    assert "an operator can unlock your login" in page
    assert response["Content-Type"].startswith("text/html")  # our page, not axes' bare text
    minutes = int(response["Retry-After"]) // 60
    assert minutes == -(-(ends_at - datetime.now(UTC)).total_seconds() // 60)


@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_wrong_passwords_lock_the_account_and_then_the_right_one_is_refused(page, staff):
    with time_machine.travel(T, tick=False):
        first = lock(page, "olivia")
        assert_lockout_page(first, ends_at=T + COOL_OFF)
        client = Client()
        refused = log_in(client, page, "olivia", "pw-olivia-123")
        assert_lockout_page(refused, ends_at=T + COOL_OFF)
        assert not logged_in(client)
    assert AccessAttempt.objects.get().failures_since_start == LIMIT  # refusals are not counted


@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_the_lock_holds_the_account_everywhere_and_the_address_for_every_account(
    page, staff, other_staff
):
    with time_machine.travel(T, tick=False):
        lock(page, "olivia", address=HOME)
        # Another account from another address: untouched.
        client = Client()
        assert log_in(client, page, "omar", "pw-omar-123", OFFICE).status_code == 302
        assert logged_in(client)
        # The locked account from another address: refused (guessers change addresses).
        assert log_in(Client(), page, "olivia", "pw-olivia-123", OFFICE).status_code == 429
        # Another account from the locked address: refused (one address, many accounts).
        assert log_in(Client(), page, "omar", "pw-omar-123", HOME).status_code == 429


def test_both_login_pages_count_towards_one_lock(staff):
    with time_machine.travel(T, tick=False):
        client = Client()
        for _ in range(LIMIT // 2):
            log_in(client, "/login/", "olivia", "wrong-guess")
            log_in(client, "/admin/login/", "olivia", "wrong-guess")
        assert log_in(client, "/admin/login/", "olivia", "pw-olivia-123").status_code == 429
        assert log_in(client, "/login/", "olivia", "pw-olivia-123").status_code == 429


@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_after_the_cool_off_the_right_password_works(page, staff):
    with time_machine.travel(T, tick=False):
        lock(page, "olivia")
    with time_machine.travel(T + COOL_OFF - timedelta(minutes=4), tick=False):
        still = log_in(Client(), page, "olivia", "pw-olivia-123")
        assert_lockout_page(still, ends_at=T + COOL_OFF)  # "in about 4 minutes", not 15
        assert "in about 4 minutes" in still.content.decode()
    with time_machine.travel(T + COOL_OFF + timedelta(seconds=1), tick=False):
        client = Client()
        assert log_in(client, page, "olivia", "pw-olivia-123").status_code == 302
        assert logged_in(client)


@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_an_operator_unlocks_with_the_management_command(page, staff):
    with time_machine.travel(T, tick=False):
        lock(page, "olivia")
        call_command("axes_reset_username", "olivia")
        client = Client()
        assert log_in(client, page, "olivia", "pw-olivia-123").status_code == 302
        assert logged_in(client)


def test_the_admin_lists_the_locked_login_and_deleting_it_unlocks(staff, django_user_model):
    root = django_user_model.objects.create_superuser("root", password="pw-root-123")
    with time_machine.travel(T, tick=False):
        lock("/login/", "olivia")
        admin = Client()
        admin.force_login(root)
        listing = admin.get("/admin/axes/accessattempt/")
        assert listing.status_code == 200 and b"olivia" in listing.content
        attempt = AccessAttempt.objects.get(username="olivia")
        deleted = admin.post(
            f"/admin/axes/accessattempt/{attempt.pk}/delete/", {"post": "yes"}, follow=True
        )
        assert deleted.status_code == 200
        assert log_in(Client(), "/login/", "olivia", "pw-olivia-123").status_code == 302


def test_a_right_password_before_the_limit_logs_in_and_the_count_stays(staff):
    """A success does not wipe the failures: else logging into one's own account between
    guesses would reset the address's count."""
    with time_machine.travel(T, tick=False):
        client = Client()
        for _ in range(LIMIT - 1):
            log_in(client, "/login/", "olivia", "wrong-guess")
        assert log_in(client, "/login/", "olivia", "pw-olivia-123").status_code == 302
        assert log_in(Client(), "/login/", "olivia", "wrong-guess").status_code == 429


def test_client_login_in_tests_goes_through_the_throttle(staff):
    """tests/conftest.py gives Client.login() the request django-axes needs."""
    with time_machine.travel(T, tick=False):
        assert Client().login(username="olivia", password="pw-olivia-123")
        for _ in range(LIMIT):
            assert not Client().login(username="olivia", password="wrong-guess")
        assert not Client().login(username="olivia", password="pw-olivia-123")


# --- the client's address -------------------------------------------------------------------


def address_of(**meta) -> str | None:
    return logins.client_address(RequestFactory().post("/login/", **meta))


def test_x_forwarded_for_is_ignored_unless_proxies_are_configured(settings):
    settings.TRUSTED_PROXY_COUNT = 0
    assert address_of(REMOTE_ADDR=HOME, HTTP_X_FORWARDED_FOR=OFFICE) == HOME


@pytest.mark.parametrize(
    ("proxies", "header", "expected"),
    [
        (1, OFFICE, OFFICE),  # the proxy appended the client it saw
        (1, f"10.9.9.9, {OFFICE}", OFFICE),  # the client's own claim, left of it, is not read
        (2, f"1.1.1.1, {OFFICE}, 10.0.0.2", OFFICE),  # a CDN, then the load balancer
        (2, OFFICE, "10.0.0.1"),  # shorter than the proxies: not through them, the peer counts
        (1, "", "10.0.0.1"),
        (1, "not-an-address", "10.0.0.1"),
        (1, "2001:DB8::1", "2001:db8::1"),
    ],
)
def test_behind_trusted_proxies_the_client_is_read_from_the_right(
    settings, proxies, header, expected
):
    settings.TRUSTED_PROXY_COUNT = proxies
    assert address_of(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=header) == expected


def test_spoofed_forwarded_for_headers_do_not_escape_the_address_lock(staff, other_staff):
    with time_machine.travel(T, tick=False):
        client = Client()
        for n in range(LIMIT):
            spoofed = f"192.0.2.{n}"
            client.post(
                "/login/",
                {"username": f"guess-{n}", "password": "x"},
                REMOTE_ADDR=HOME,
                HTTP_X_FORWARDED_FOR=spoofed,
            )
        assert log_in(Client(), "/login/", "omar", "pw-omar-123", HOME).status_code == 429


def test_behind_a_proxy_each_client_is_counted_apart(settings, staff, other_staff):
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = "10.0.0.1"
    with time_machine.travel(T, tick=False):
        for n in range(LIMIT):
            Client().post(
                "/login/",
                {"username": f"guess-{n}", "password": "x"},
                REMOTE_ADDR=proxy,
                HTTP_X_FORWARDED_FOR=HOME,
            )
        behind_home = Client().post(
            "/login/",
            {"username": "omar", "password": "pw-omar-123"},
            REMOTE_ADDR=proxy,
            HTTP_X_FORWARDED_FOR=HOME,
        )
        behind_office = Client().post(
            "/login/",
            {"username": "omar", "password": "pw-omar-123"},
            REMOTE_ADDR=proxy,
            HTTP_X_FORWARDED_FOR=OFFICE,
        )
    assert behind_home.status_code == 429
    assert behind_office.status_code == 302


# --- when a lock ends -----------------------------------------------------------------------


def test_a_lock_spread_over_rows_ends_when_the_rows_that_reach_the_limit_leave(db):
    """Failures from three browsers: 4 at 9:00, 4 at 9:05, 3 at 9:10 (11 ≥ 10). At 9:15 the
    first row leaves the window and 7 remain: the lock ends with the 9:00 row."""
    for minute, failures, agent in ((0, 4, "a"), (5, 4, "b"), (10, 3, "c")):
        with time_machine.travel(T.replace(minute=minute), tick=False):  # auto_now_add
            AccessAttempt.objects.create(
                username="olivia",
                ip_address=HOME,
                user_agent=agent,
                failures_since_start=failures,
                get_data="",
                post_data="",
                http_accept="",
                path_info="/login/",
            )
    now = T.replace(minute=11)
    assert logins.lock_ends_at(username="olivia", address=None, now=now) == T.replace(minute=15)
    assert logins.lock_ends_at(username=None, address=HOME, now=now) == T.replace(minute=15)
    assert logins.lock_ends_at(username="omar", address=OFFICE, now=now) is None
    assert logins.usernames_locked(usernames=["olivia", "omar"], now=now) == {
        "olivia": T.replace(minute=15)
    }
    later = T.replace(minute=16)  # the 9:00 row has left: 7 failures, no lock
    assert logins.lock_ends_at(username="olivia", address=HOME, now=later) is None


def test_a_username_longer_than_any_account_is_counted_not_a_500(db):
    """Found by the hostile walk: Django's login form does not bound the username, and axes
    stores at most 255 characters of it."""
    with time_machine.travel(T, tick=False):
        client = Client(raise_request_exception=False)
        statuses = [
            log_in(client, "/login/", "x" * 5000, "guess").status_code for _ in range(LIMIT)
        ]
    assert statuses == [200] * (LIMIT - 1) + [429]
    assert AccessAttempt.objects.get().username == "x" * 255

"""Login throttling in a real browser (issue 22, item 1): someone typing wrong passwords gets our
lockout page, which says what happened, when to try again and who can unlock it; the right
password is refused until then. The page fixture fails the test on any CSP violation."""

from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


@pytest.fixture(autouse=True)
def fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def submit(page, username, password):
    page.get_by_label("Email or username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()


def test_wrong_passwords_until_the_lockout_page_then_the_right_one_is_refused(
    live_server, page, django_user_model, settings
):
    django_user_model.objects.create_user("owner@shop.example", password="pw-owner-123")
    page.goto(live_server.url + "/login/")
    typed = 0
    while not page.get_by_role("heading", name="Too many failed logins").is_visible():
        assert typed < settings.AXES_FAILURE_LIMIT, "no lockout after the limit"
        submit(page, "owner@shop.example", f"wrong-{typed}")
        typed += 1
    assert typed == settings.AXES_FAILURE_LIMIT
    text = page.locator("#locked-out").inner_text()
    assert "after 10 wrong passwords" in text
    assert "Try again after" in text and "UTC (in about 15 minutes)" in text
    assert "an operator can unlock your login" in text
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "login-locked-out.png"))
    page.get_by_role("link", name="Back to the login page").click()
    submit(page, "owner@shop.example", "pw-owner-123")
    page.get_by_role("heading", name="Too many failed logins").wait_for()
    assert page.url.endswith("/login/")

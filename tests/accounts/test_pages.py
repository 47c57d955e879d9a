"""The merchant's first pages: login and the landing page, scoped to their accounts."""

from plans.models import Subscription


def test_login_page_renders(client, db):
    response = client.get("/login/")
    assert response.status_code == 200
    assert b"Log in" in response.content


def test_home_needs_a_login(client, db):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_owner_logs_in_and_sees_only_their_account(client, owner, outsider):
    response = client.post(
        "/login/", {"username": "owner@shop.example", "password": "pw-owner-123"}
    )
    assert response.status_code == 302
    page = client.get("/").content.decode()
    subscription = Subscription.objects.get(account__slug="shop")
    assert "Shop" in page and "Basic plan" in page
    assert subscription.current_period_start.strftime("%b") in page
    assert "Elsewhere" not in page


def test_wrong_password_says_so(client, owner):
    response = client.post("/login/", {"username": "owner@shop.example", "password": "nope"})
    assert response.status_code == 200
    assert b"Please enter a correct" in response.content

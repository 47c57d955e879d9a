"""Pages the other browser tests do not open, under the Content-Security-Policy (issue 22, item
5): the API docs (Swagger UI from the sidecar, its init script served apart) and the admin. The
page fixture fails a test on any CSP or Permissions-Policy message in the console."""

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_api_docs_render_under_the_policy(live_server, page):
    page.goto(live_server.url + "/api/docs/")
    page.get_by_text("Billing portal API").first.wait_for()
    page.locator(".opblock").first.wait_for()  # operations drawn from the schema
    assert page.locator(".opblock").count() > 10


def test_the_admin_works_under_the_policy(live_server, page, django_user_model, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    django_user_model.objects.create_superuser("root", password="pw-root-123")
    page.goto(live_server.url + "/admin/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill("pw-root-123")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Access attempts").wait_for()  # django-axes' list
    page.get_by_role("link", name="Access attempts").click()
    page.get_by_text("0 access attempts").wait_for()
    page.goto(live_server.url + "/admin/auth/user/")
    page.get_by_role("link", name="root").click()
    page.get_by_label("Email address").wait_for()  # a change form, its widgets' scripts

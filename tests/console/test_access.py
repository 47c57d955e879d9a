"""Only billing operators reach the console: every other logged-in user gets a 404 on every
console URL, walked from the URL patterns so that a new route cannot skip the check."""

import importlib

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import Group
from django.urls import URLPattern, URLResolver, get_resolver

from console import urls as console_urls

pytestmark = pytest.mark.django_db


def console_paths() -> list[str]:
    """Every console route with made-up ids (the check comes before any lookup)."""
    paths = []
    for pattern in console_urls.urlpatterns:
        assert isinstance(pattern, URLPattern), "no nested includes under /console/"
        route = str(pattern.pattern)
        for converter, value in [
            ("<int:invoice_id>", "1"),
            ("<int:account_id>", "1"),
            ("<int:dispute_id>", "1"),
            ("<int:ticket_dispute_id>", "1"),
            ("<int:anomaly_id>", "1"),
            ("<int:hold_id>", "1"),
        ]:
            route = route.replace(converter, value)
        route = route.replace("<slug:action>", "void")
        assert "<" not in route, f"a new converter in {route}: teach this walk about it"
        paths.append("/console/" + route)
    return paths


def test_the_walk_covers_every_console_route():
    resolver = get_resolver()
    mounted = [
        p for p in resolver.url_patterns if isinstance(p, URLResolver) and p.app_name == "console"
    ]
    assert len(mounted) == 1
    assert len(console_paths()) == len(console_urls.urlpatterns) == 16
    for pattern in console_urls.urlpatterns:
        assert getattr(pattern.callback, "console_page", False), pattern.name


@pytest.mark.parametrize("who", ["staff_without_console", "owner"])
@pytest.mark.parametrize("method", ["get", "post"])
def test_anyone_but_an_operator_gets_404_everywhere(request, client, who, method):
    client.force_login(request.getfixturevalue(who))
    for path in console_paths():
        response = getattr(client, method)(path)
        assert response.status_code == 404, (path, response.status_code)


def test_a_superuser_who_is_not_staff_any_more_gets_404(client, django_user_model):
    user = django_user_model.objects.create_user("ex", password="pw-ex-12345", is_superuser=True)
    client.force_login(user)
    assert client.get("/console/").status_code == 404


def test_anonymous_visitors_are_sent_to_log_in(client):
    response = client.get("/console/")
    assert response.status_code == 302 and response.url.startswith("/login/?next=/console/")


def test_an_operator_gets_every_page(ops, past_due):
    for path in [
        "/console/",
        f"/console/invoices/{past_due.pk}/",
        "/console/audit/",
        f"/console/accounts/{past_due.account_id}/",
        "/console/figures/",
        "/console/vat/",
        "/console/disputes/",
    ]:
        assert ops.get(path).status_code == 200, path
    assert ops.get("/console/invoices/999999/").status_code == 404
    assert ops.get(f"/console/invoices/{past_due.pk}/no-such-action/").status_code == 404


def test_actions_need_csrf(operator, past_due):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    response = client.post(f"/console/invoices/{past_due.pk}/void/", {"reason": "x"})
    assert response.status_code == 403
    past_due.refresh_from_db()
    assert past_due.status == "past_due"


def test_the_data_migration_creates_the_operators_group_with_the_permission():
    migration = importlib.import_module("audit.migrations.0001_initial")
    Group.objects.filter(name="billing operators").delete()
    migration._operators_group(django_apps, None)
    group = Group.objects.get(name="billing operators")
    assert list(group.permissions.values_list("codename", flat=True)) == ["use_console"]

"""Who may do what on the Billing & Usage pages: every URL pattern of billing.pages is walked,
so a new route cannot skip the check. Outsiders get 404 on everything (no existence leak),
agents look but get 403 on every change, staff are sent to the operator console."""

import pytest
from django.urls import URLPattern

from billing.models import Invoice
from billing.pages import urls as page_urls
from plans.models import ScheduledChange, Subscription
from tests.billing.pages_fixtures import HALF, account, at  # noqa: F401

PATTERNS = [p for p in page_urls.urlpatterns if isinstance(p, URLPattern)]


@pytest.fixture
def objects(account):  # noqa: F811
    """One object of the shop for every kind of id a billing URL takes."""
    subscription = Subscription.objects.get(account=account)
    change = ScheduledChange.objects.create(
        subscription=subscription,
        plan=subscription.plan.__class__.objects.get(code="starter"),
        effective_at=subscription.current_period_end,
    )
    return {"invoice_id": Invoice.objects.get(account=account).pk, "change_id": change.pk}


def url(pattern: URLPattern, slug: str, objects: dict) -> str:
    kwargs = {"slug": slug}
    for name in pattern.pattern.converters:
        kwargs[name] = objects[name]
    return "/billing/" + slug + "/" + _fill(str(pattern.pattern), kwargs)


def _fill(route: str, kwargs: dict) -> str:
    for name, value in kwargs.items():
        route = route.replace(f"<int:{name}>", str(value)).replace(f"<{name}>", str(value))
    return route


def test_every_billing_route_goes_through_the_access_check():
    for pattern in PATTERNS:
        assert hasattr(pattern.callback, "billing_change"), pattern.name


@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: p.name)
def test_an_outsider_gets_404_for_every_page_form_and_file(client, outsider, objects, pattern):
    client.force_login(outsider)
    target = url(pattern, "shop", objects)
    with at(HALF):
        assert client.get(target).status_code == 404, target
        assert client.post(target, {"plan": "pro"}).status_code == 404, target


@pytest.mark.parametrize(
    "pattern", [p for p in PATTERNS if p.pattern.converters], ids=lambda p: p.name
)
def test_an_outsider_cannot_reach_the_shops_objects_through_their_own_slug(
    client, outsider, objects, pattern
):
    client.force_login(outsider)
    target = url(pattern, "elsewhere", objects)
    with at(HALF):
        for method in pattern.callback.billing_methods:
            response = getattr(client, method.lower())(target)
            assert response.status_code == 404, (method, target)


@pytest.mark.parametrize(
    "pattern", [p for p in PATTERNS if p.callback.billing_change], ids=lambda p: p.name
)
def test_an_agent_gets_403_on_every_change(client, teammate, objects, pattern):
    client.force_login(teammate)
    target = url(pattern, "shop", objects)
    with at(HALF):
        assert client.post(target, {"plan": "pro"}).status_code == 403, target
    assert ScheduledChange.objects.get(pk=objects["change_id"]).status == "scheduled"
    assert Subscription.objects.get(account__slug="shop").plan.code == "basic"


@pytest.mark.parametrize(
    "pattern",
    # Shopify's return page only redirects to the overview (tests/shopify/test_lifecycle.py).
    [
        p
        for p in PATTERNS
        if not p.callback.billing_change and p.name not in ("payment-method", "shopify-return")
    ],
    ids=lambda p: p.name,
)
def test_an_agent_looks_at_every_page(client, teammate, objects, pattern):
    client.force_login(teammate)
    with at(HALF):
        response = client.get(url(pattern, "shop", objects))
    assert response.status_code == 200
    if response["Content-Type"].startswith("text/html"):
        page = response.content.decode()
        assert "Changes are made by the account's owners and admins" in page
        assert "Retry payment" not in page and "Pay all outstanding" not in page


def test_an_agent_sees_the_card_but_gets_no_card_form(client, teammate, account):  # noqa: F811
    client.force_login(teammate)
    page = client.get("/billing/shop/payment-method").content.decode()
    assert "No card on file" in page and "Save card" not in page


def test_a_visitor_is_asked_to_log_in(client, account):  # noqa: F811
    response = client.get("/billing/shop/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_staff_are_sent_to_the_operator_console(client, account, django_user_model):  # noqa: F811
    staff = django_user_model.objects.create_user("ops", password="pw", is_staff=True)
    client.force_login(staff)
    response = client.get("/billing/shop/invoices/")
    assert response.status_code == 302
    assert response["Location"] == f"/admin/accounts/account/{account.pk}/change/"
    assert client.get("/billing/nowhere/").status_code == 404
    assert client.get("/")["Location"] == "/admin/"


def test_billing_operators_are_sent_to_the_console(client, account, django_user_model):  # noqa: F811
    from django.contrib.auth.models import Group

    operator = django_user_model.objects.create_user("ops", password="pw", is_staff=True)
    operator.groups.add(Group.objects.get(name="billing operators"))
    client.force_login(operator)
    response = client.get("/billing/shop/invoices/")
    assert response.status_code == 302
    assert response["Location"] == f"/console/accounts/{account.pk}/"
    assert client.get("/")["Location"] == "/console/"


def test_an_admin_member_manages_billing(client, account, django_user_model):  # noqa: F811
    from accounts.models import Membership

    admin = django_user_model.objects.create_user("admin@shop.example", password="pw")
    Membership.objects.create(user=admin, account=account, role=Membership.Role.ADMIN)
    client.force_login(admin)
    with at(HALF):
        response = client.get("/billing/shop/change/?plan=starter")
    assert response.status_code == 200
    assert "takes effect at the end of your billing cycle" in response.content.decode()

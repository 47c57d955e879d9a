"""Hostile input on every route (issue 20, item 8): no answer is a 5xx.

The routes come from Django's URL resolver, so a route added tomorrow is fuzzed too. Each gets
a fixed list of hostile values (NUL, very long, `../`, RTL and zero-width, SQL, ANSI escapes,
emoji, lone surrogates, negative and huge integers) in each path argument, in the query string,
in a form or JSON body and in the headers, sent anonymously and as the caller the route is for
(the owner on /billing/, an operator on /console/, a superuser on /admin/, a partner key on
/api/). Then the NUL byte itself: a 400 wherever it is (middleware RefuseNulBytes), in the
API's error format under /api/.
"""

import copy
import json
import logging
import re
import time
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

import pytest
import time_machine
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.urls.resolvers import RoutePattern

from accounts import services as account_services
from accounts.models import Membership
from billing.models import Invoice
from billing.run import run_billing
from outbox import services as outbox_services
from outbox.models import Delivery
from plans.models import Plan, ScheduledChange, Subscription
from tests.console.conftest import operators_group

T0 = datetime(2026, 11, 1, tzinfo=UTC)
HALF = datetime(2026, 11, 16, tzinfo=UTC)

HOSTILE: dict[str, object] = {
    "nul": "a\x00b",
    "long": "x" * 5_000,
    "dot_dot_slash": "../../../etc/passwd",
    "rtl_zero_width": "\u202egnp.exe\u200b\u200d\ufeff",
    "sql": "' OR 1=1 --",
    "negative": -1,
    "huge": 10**30,
    "huge_negative": -(10**30),
    "ansi": "\x1b[31mred\x1b[0m",
    "emoji": "💸🧾👩‍👩‍👧",
    "lone_surrogate": "\ud800",
}
# Every name a view or form of ours reads (grep request.GET/POST/data and the forms), plus
# the admin's own: each request carries the hostile value in all of them at once.
FIELDS = """
    q action page period cursor limit status endpoint next setup_intent form_token plan interval
    addon tier amount at_limit attention billing_email city company country currency
    min_age_days min_amount monthly_limit partner postal_code reason reference sort ticket until
    vat_id name slug url description stripe_payment_method username password o p e
""".split()  # noqa: SIM905 (a list of names, read as words)
# As a WSGI server hands them over: the bytes sent (UTF-8 here), read as latin-1.
HEADERS = {
    "HTTP_COOKIE": "sessionid=a\x00b; csrftoken=\u202e".encode().decode("latin-1"),
    "HTTP_IDEMPOTENCY_KEY": "k\x00",
    "HTTP_USER_AGENT": "\x1b[31m' OR 1=1 --",
    "HTTP_REFERER": "http://testserver/../../\x00",
    "HTTP_HX_REQUEST": "true",
    "HTTP_HX_CURRENT_URL": "x" * 10_000,
}
STILL_IN = {
    "owner": "/billing/shop/",
    "operator": "/console/",
    "superuser": "/admin/",
    "partner": "/api/v1/plans",
}
# The readiness probe says 503 while no beat scheduler runs (as in tests), whatever is sent.
EXPECTED_5XX = {"readyz": 503}
# To keep the walk under a minute, some routes get a few of the values in turn (all of them
# across the routes): the admin's ~200 routes (Django's own), and anonymous calls to routes
# that are for someone else (refused before the view reads its input).
ADMIN_VALUES_PER_ROUTE = 2
REFUSED_VALUES_PER_ROUTE = 4


def text(value) -> str:
    return str(value)


def encoded(value) -> str:
    """Percent-encoded as UTF-8; a lone surrogate becomes the bytes a client would send."""
    return quote(text(value).encode("utf-8", "surrogatepass"), safe="")


def query(value) -> str:
    raw = text(value).encode("utf-8", "surrogatepass")
    return urlencode([(name, raw) for name in FIELDS])


# --- the routes --------------------------------------------------------------------------


def routes():
    """(name, route template, path argument names, regex-only) for every URL pattern."""

    def walk(patterns, prefix, namespace, regex):
        for pattern in patterns:
            is_regex = regex or not isinstance(pattern.pattern, RoutePattern)
            if isinstance(pattern, URLResolver):
                inner = f"{namespace}:{pattern.namespace}" if pattern.namespace else namespace
                yield from walk(
                    pattern.url_patterns, prefix + str(pattern.pattern), inner, is_regex
                )
            elif isinstance(pattern, URLPattern):
                name = f"{namespace}:{pattern.name}".strip(":") if pattern.name else None
                route = prefix + str(pattern.pattern)
                args = re.findall(r"<(?:\w+:)?(\w+)>|\(\?P<(\w+)>", route)
                yield name, route, [a or b for a, b in args], is_regex

    return list(walk(get_resolver().url_patterns, "", "", False))


def caller_of(route: str) -> str:
    for prefix, caller in (
        ("api/v1/", "partner"),
        ("billing/", "owner"),
        ("console/", "operator"),
        ("admin/", "superuser"),
    ):
        if route.startswith(prefix):
            return caller
    return "anonymous"


@pytest.fixture
def world(make_account, partner, stripe_standin, settings, caplog, django_user_model):
    """One account with an issued invoice, a scheduled change, a webhook endpoint and a
    delivery; the owner, an operator, a superuser and a partner key."""
    settings.API_RATE_LIMITS = {"api": 10**6, "ingest": 10**6}
    # Each hostile login runs the hasher once (on a dummy): PBKDF2 would be half the walk.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    caplog.set_level(logging.CRITICAL, logger="django.request")  # 4xx by the thousand
    caplog.set_level(logging.CRITICAL, logger="django.security")
    with time_machine.travel(T0, tick=False):
        account = make_account(slug="shop", plan="pro")
    run_billing(as_of=T0)
    subscription = Subscription.objects.get(account=account)
    change = ScheduledChange.objects.create(
        subscription=subscription,
        plan=Plan.objects.get(code="basic"),
        effective_at=subscription.current_period_end,
    )
    endpoint, _ = outbox_services.endpoint_create(partner=partner, url="https://hooks.example/f")
    outbox_services.outbox_emit(account_id=account.pk, type="entitlement.changed", data={})
    # force_login needs no password: none is hashed (PBKDF2 would be most of the setup).
    owner = django_user_model.objects.create_user("owner@shop.example")
    Membership.objects.create(user=owner, account=account, role=Membership.Role.OWNER)
    operator = django_user_model.objects.create_user("olivia", is_staff=True)
    operator.groups.add(operators_group())
    root = django_user_model.objects.create_superuser("root")
    _, key = account_services.api_key_create(partner=partner, name="fuzz")
    clients = {"anonymous": Client(raise_request_exception=False)}
    for name, user in (("owner", owner), ("operator", operator), ("superuser", root)):
        clients[name] = Client(raise_request_exception=False)
        clients[name].force_login(user)
    clients["partner"] = Client(
        raise_request_exception=False, headers={"authorization": f"Bearer {key}"}
    )
    invoice = Invoice.objects.filter(account=account).first()
    samples = {
        "slug": "shop",
        "invoice_id": invoice.pk,
        "account_id": account.pk,
        "change_id": change.pk,
        "endpoint_id": endpoint.public_id,
        "delivery_id": Delivery.objects.get().public_id,
        "ticket": "T1",
        "token": "not-a-token",
        "app_label": "billing",
        "object_id": invoice.pk,
        "content_type_id": 1,
    }
    return clients, samples


def sample_args(name: str | None, route: str, args: list[str], samples: dict) -> dict:
    values = {arg: samples.get(arg, 1) for arg in args}
    if "action" in values:
        values["action"] = "retry" if "invoices/" in route else "suspend"
    return values


def url_for(route: str, values: dict) -> str:
    path = route
    for arg, value in values.items():
        path = re.sub(rf"<(?:\w+:)?{arg}>", encoded(value), path)
    return "/" + path


def base_url(name, route, args, regex, samples) -> str | None:
    values = sample_args(name, route, args, samples)
    if regex:
        return reverse(name, kwargs=values) if name else None
    return url_for(route, values)


def send(client: Client, method: str, url: str, value, *, api: bool, **extra):
    if method == "GET":
        return client.get(url, **extra)
    if api:
        body = json.dumps({field: value for field in FIELDS})
        return client.generic("POST", url, body, content_type="application/json", **extra)
    raw = text(value).encode("utf-8", "surrogatepass")
    body = urlencode([(field, raw) for field in FIELDS])
    return client.generic(
        "POST", url, body, content_type="application/x-www-form-urlencoded", **extra
    )


def server_error(name: str | None, response) -> str | None:
    if response.status_code < 500 or EXPECTED_5XX.get(name) == response.status_code:
        return None
    exc = getattr(response, "exc_info", None)
    return repr(exc[1]) if exc else response.content[:200].decode(errors="replace")


@pytest.mark.parametrize("caller", ["anonymous", "owner", "operator", "superuser", "partner"])
def test_hostile_values_on_every_route_are_never_a_5xx(world, caller):
    clients, samples = world
    client = clients[caller]
    failures, sent, started = [], 0, time.monotonic()
    with time_machine.travel(HALF, tick=False):
        for index, (name, route, args, regex) in enumerate(routes()):
            if caller != "anonymous" and (caller_of(route) != caller or "logout" in str(name)):
                continue  # (logging out is anonymous's to try: the walk goes on logged in)
            admin = route.startswith("admin/")
            if admin and caller == "anonymous" and name not in ("admin:index", "admin:login"):
                continue  # the rest redirect to the admin's login before reading anything
            url = base_url(name, route, args, regex, samples)
            if url is None:
                continue
            api = route.startswith("api/")
            values = list(HOSTILE.items())
            share = len(values)
            if admin:
                share = ADMIN_VALUES_PER_ROUTE
            elif caller_of(route) != caller:
                share = REFUSED_VALUES_PER_ROUTE
            start = index * share % len(values)
            values = (values * 2)[start : start + share]
            tries = []
            for label, value in values:
                tries.append((f"GET ?{label}", "GET", f"{url}?{query(value)}", value, {}))
                tries.append((f"POST {label}", "POST", f"{url}?{query(value)}", value, {}))
                if not regex:
                    for arg in args:
                        hostile = sample_args(name, route, args, samples) | {arg: value}
                        tries.append((f"GET {arg}={label}", "GET", url_for(route, hostile), 0, {}))
            if caller_of(route) == caller and not admin:
                # NUL alone in each field too: with every field hostile at once, a view may
                # refuse another one first (a bad page number) and never reach the query
                # that NUL breaks (the audit search did).
                for field in FIELDS:
                    target = f"{url}?{field}={encoded(HOSTILE['nul'])}"
                    tries.append((f"GET ?{field}=nul", "GET", target, 0, {}))
            tries.append(("GET headers", "GET", url, "", HEADERS))
            tries.append(("POST headers", "POST", url, "", HEADERS))
            for label, method, target, value, headers in tries:
                cookies = copy.deepcopy(client.cookies)
                response = send(client, method, target, value, api=api, **headers)
                if headers:
                    # A hostile Cookie header may end the session the answer then deletes:
                    # keep the caller logged in for the routes that follow.
                    client.cookies = cookies
                sent += 1
                error = server_error(name, response)
                if error:
                    failures.append(f"{route} {label}: {response.status_code} {error}")
    elapsed = time.monotonic() - started
    if caller in STILL_IN:  # the walk ran as this caller to its end, not logged out half-way
        assert client.get(STILL_IN[caller]).status_code == 200
    print(f"{caller}: {sent} hostile requests in {elapsed:.1f} s")
    assert not failures, f"{len(failures)} of {sent}:\n" + "\n".join(failures[:60])


# --- NUL bytes: a 400 at the edge --------------------------------------------------------


def api_error(response) -> dict:
    assert response.status_code == 400, response.content[:300]
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"} and error["code"] == "invalid"
    assert "NUL byte" in error["message"]
    return error


API_NUL_CASES = {
    "/api/v1/webhook-endpoints/we_%00": "endpoint_id",
    "/api/v1/webhook-endpoints?cursor=%00": "cursor",
    "/api/v1/webhook-deliveries/%00": "delivery_id",
    "/api/v1/webhook-deliveries/%00/replay": "delivery_id",
    "/api/v1/accounts/sh%00op/usage": "path",  # no route takes it (a slug has no NUL)
    "/api/v1/webhook-deliveries?status=%00&endpoint=we_1": "status",
    "/api/v1/webhook-deliveries?endpoint=we_%00": "endpoint",
    "/api/v1/accounts/shop/usage?period=2026-11%00": "period",
}
PAGE_NUL_CASES = [
    ("owner", "GET", "/billing/shop/change/?plan=pro%00", None),
    ("owner", "GET", "/billing/sh%00op/change/", None),
    ("owner", "GET", "/billing/shop/start/?plan=%00", None),
    ("owner", "POST", "/billing/shop/start/", {"plan": "basic\x00", "interval": "month"}),
    ("owner", "POST", "/billing/shop/details/save", {"company": "Shop\x00", "country": "DE"}),
    ("operator", "GET", "/console/audit/?q=%00", None),
    ("operator", "GET", "/console/audit/?action=%00&q=x", None),
    ("anonymous", "POST", "/login/", {"username": "a\x00", "password": "b"}),
]


def test_a_nul_byte_in_an_api_path_query_header_or_body_is_a_400_in_the_error_format(world):
    clients, _ = world
    partner = clients["partner"]
    for url, field in API_NUL_CASES.items():
        method = "POST" if url.endswith("/replay") else "GET"
        assert api_error(partner.generic(method, url))["details"] == {"field": field}, url
    header = partner.post("/api/v1/webhook-endpoints", {}, HTTP_IDEMPOTENCY_KEY="k\x00")
    assert api_error(header)["details"] == {"field": "Idempotency-Key"}
    raw = b'{"url": "https://hooks.example/\x00"}'
    body = partner.generic("POST", "/api/v1/webhook-endpoints", raw, "application/json")
    assert api_error(body)["details"] == {"field": "body"}


def test_a_nul_byte_on_a_page_or_in_a_cookie_is_a_plain_400_page(world):
    clients, _ = world
    for caller, method, url, data in PAGE_NUL_CASES:
        client = clients[caller]
        response = client.get(url) if method == "GET" else client.post(url, data)
        assert response.status_code == 400, (caller, method, url)
        assert response["Content-Type"].startswith("text/html")
        assert b"Bad request" in response.content and b"NUL byte" in response.content
    # Before the session middleware looks the cookie up in the database.
    response = Client().get("/billing/shop/", HTTP_COOKIE="sessionid=abc\x00def")
    assert response.status_code == 400 and b"NUL byte" in response.content


def test_a_lone_surrogate_echoed_in_a_field_error_is_a_400_not_a_500(world):
    """Found by the walk above: '"\\ud800" is not a valid choice.' could not be encoded."""
    clients, _ = world
    body = '{"plan": "\\ud800", "interval": "\\ud800"}'
    response = clients["partner"].generic(
        "POST", "/api/v1/accounts/shop/subscription/changes", body, "application/json"
    )
    assert response.status_code == 400
    assert b"\\ud800" in response.content  # escaped: the same JSON, in bytes UTF-8 carries
    assert response.json()["error"]["details"]["fields"]["interval"]


def test_nul_free_hostile_text_still_reaches_the_views(world):
    """The check refuses NUL only: other odd text is the views' to judge (here: not found)."""
    clients, _ = world
    response = clients["partner"].get("/api/v1/webhook-deliveries/%E2%80%AE..%2F")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"

"""Every route under /api/v1/, walked from the urlconf: who may call what.

A route added to billing_portal/api_urls.py without an entry in CASES fails
`test_every_route_and_method_is_covered`, so no endpoint ships without these checks:

- partner B's key gets 404 on partner A's objects (never 403: no existence leak);
- a read-only key gets 403 on every write; an `events:write` key 403 everywhere but ingest;
- a logged-in session (a staff user, even) without a key gets 401;
- every POST takes `Idempotency-Key` (a malformed one is a 400 before anything runs).
"""

from datetime import UTC, datetime

import pytest
import time_machine
from django.urls import URLPattern, URLResolver
from rest_framework.test import APIClient

from accounts import services as account_services
from billing.models import Invoice, TicketDispute
from billing.run import run_billing
from billing_portal import api_urls
from metering.models import UsageAnomaly
from tests.conftest import client_with_key

T0 = datetime(2026, 11, 1, tzinfo=UTC)
HALF = datetime(2026, 11, 16, tzinfo=UTC)

EVENT = {
    "id": "e-1",
    "account": "shop",
    "type": "message",
    "occurred_at": "2026-11-15T09:00:00Z",
    "ticket": "T1",
    "channel": "email",
    "author": "customer",
}
NEW_ACCOUNT = {
    "slug": "newshop",
    "name": "New shop",
    "billing_email": "b@new.example",
    "plan": "basic",
}

# route name → method → (path with {placeholders}, body, "tenant" if the path names A's object)
CASES = {
    "api-accounts": {
        "GET": ("accounts", None, None),
        "POST": ("accounts", NEW_ACCOUNT, None),
    },
    "api-account": {
        "GET": ("accounts/{slug}", None, "tenant"),
        "PATCH": ("accounts/{slug}", {"city": "Lyon"}, "tenant"),
    },
    "api-usage": {"GET": ("accounts/{slug}/usage", None, "tenant")},
    "api-ticket-billing": {"GET": ("accounts/{slug}/tickets/T1/billing", None, "tenant")},
    "api-entitlements": {"GET": ("accounts/{slug}/entitlements", None, "tenant")},
    "api-ticket-disputes": {
        "GET": ("accounts/{slug}/ticket-disputes", None, "tenant"),
        "POST": ("accounts/{slug}/ticket-disputes", {"ticket": "T1", "reason": "spam"}, "tenant"),
    },
    "api-ticket-disputes-bulk": {
        "POST": (
            "accounts/{slug}/ticket-disputes/bulk",
            {"requester": "a@example.com", "reason": "spam"},
            "tenant",
        )
    },
    "api-ticket-dispute": {
        "GET": ("accounts/{slug}/ticket-disputes/{ticket_dispute}", None, "tenant")
    },
    "api-held-usage": {"GET": ("accounts/{slug}/held-usage", None, "tenant")},
    "api-held-usage-release": {
        "POST": ("accounts/{slug}/held-usage/release", {"tickets": ["T1"]}, "tenant")
    },
    "api-held-usage-exclude": {
        "POST": ("accounts/{slug}/held-usage/exclude", {"tickets": ["T1"]}, "tenant")
    },
    "api-anomaly-release": {
        "POST": ("accounts/{slug}/anomalies/{anomaly}/release", None, "tenant")
    },
    "api-anomaly-exclude": {
        "POST": ("accounts/{slug}/anomalies/{anomaly}/exclude", None, "tenant")
    },
    "api-spike-guard": {
        "GET": ("accounts/{slug}/spike-guard", None, "tenant"),
        "PATCH": ("accounts/{slug}/spike-guard", {"loop_tickets": 20}, "tenant"),
    },
    "api-account-invoices": {"GET": ("accounts/{slug}/invoices", None, "tenant")},
    "api-subscription-start": {
        "POST": ("accounts/{slug}/subscription", {"plan": "pro", "interval": "month"}, "tenant")
    },
    "api-subscription-changes": {
        "POST": ("accounts/{slug}/subscription/changes", {"plan": "pro"}, "tenant")
    },
    "api-subscription-change": {
        "DELETE": ("accounts/{slug}/subscription/changes/{change}", None, "tenant")
    },
    "api-invoice": {"GET": ("invoices/{invoice}", None, "tenant")},
    "api-invoice-pdf": {"GET": ("invoices/{invoice}/pdf", None, "tenant")},
    "api-invoice-retry": {"POST": ("invoices/{invoice}/retry", None, "tenant")},
    # A refund, which B's key (and any key without `refunds:write`) may not ask for.
    "api-invoice-credit-notes": {
        "POST": (
            "invoices/{invoice}/credit-notes",
            {"amount": 100, "refund": 100, "reason": "Outage"},
            "tenant",
        )
    },
    "api-invoice-confirmation-link": {
        "POST": ("invoices/{invoice}/confirmation-link", None, "tenant")
    },
    "api-payment-method": {
        "PUT": (
            "accounts/{slug}/payment-method",
            {"stripe_payment_method": "pm_card_visa"},
            "tenant",
        )
    },
    # With A's account named in the event, B's key is refused as for any other A object.
    "api-events": {"POST": ("events", {"events": [EVENT]}, "tenant")},
    "api-plans": {"GET": ("plans", None, None)},
    "api-webhook-endpoints": {
        "GET": ("webhook-endpoints", None, None),
        "POST": ("webhook-endpoints", {"url": "https://hooks.example/b"}, None),
    },
    "api-webhook-endpoint": {
        "GET": ("webhook-endpoints/{endpoint}", None, "tenant"),
        "DELETE": ("webhook-endpoints/{endpoint}", None, "tenant"),
    },
    "api-webhook-deliveries": {"GET": ("webhook-deliveries", None, None)},
    "api-webhook-delivery": {"GET": ("webhook-deliveries/{delivery}", None, "tenant")},
    "api-webhook-delivery-replay": {
        "POST": ("webhook-deliveries/{delivery}/replay", None, "tenant")
    },
}


def _routes():
    """(name, method) of every view under /api/v1/, read from the urlconf itself."""
    found = set()
    for pattern in api_urls.urlpatterns:
        assert not isinstance(pattern, URLResolver), "nested includes: walk them too"
        assert isinstance(pattern, URLPattern)
        view = pattern.callback.view_class
        for method in view.http_method_names:
            if method not in ("options", "head", "trace") and hasattr(view, method):
                found.add((pattern.name, method.upper()))
    return found


def test_every_route_and_method_is_covered():
    covered = {(name, method) for name, methods in CASES.items() for method in methods}
    assert _routes() == covered


ALL = sorted((name, method) for name, methods in CASES.items() for method in methods)


@pytest.fixture
def world(make_account, partner, django_capture_on_commit_callbacks):
    """Partner A with an account, an invoice, a scheduled change, a webhook endpoint and a
    delivery; keys of every kind; partner B with its own key."""
    from outbox import services as outbox_services
    from outbox.models import Delivery

    with time_machine.travel(T0, tick=False):
        account = make_account(slug="shop", plan="pro")
    run_billing(as_of=T0)
    invoice = Invoice.objects.filter(account=account).first()
    _, full = account_services.api_key_create(partner=partner)
    with time_machine.travel(HALF, tick=False):
        downgrade = client_with_key(full).post(
            "/api/v1/accounts/shop/subscription/changes", {"plan": "basic"}, format="json"
        )
        with django_capture_on_commit_callbacks(execute=True):  # the ticket gets its verdict
            client_with_key(full).post("/api/v1/events", {"events": [EVENT]}, format="json")
    endpoint, _secret = outbox_services.endpoint_create(
        partner=partner, url="https://hooks.example/a"
    )
    with django_capture_on_commit_callbacks(execute=False):
        outbox_services.outbox_emit(
            account_id=account.pk, type="subscription.changed", data={"plan": "pro"}
        )
    delivery = Delivery.objects.get(endpoint=endpoint)
    dispute = TicketDispute.objects.create(
        account=account, ticket="T1", reason="spam", filed_by="tests", created_at=HALF
    )
    anomaly = UsageAnomaly.objects.create(
        account=account,
        meter="helpdesk_tickets",
        day=HALF.date(),
        observed=400,
        baseline=40,
        spread=2,
        weeks=8,
        status="open",
        opened_at=HALF,
    )
    other = account_services.partner_get_or_create(name="Rival Partners")
    keys = {
        "A": full,
        "B": account_services.api_key_create(partner=other)[1],
        "read": account_services.api_key_create(partner=partner, scopes=["read"])[1],
        "events": account_services.api_key_create(partner=partner, scopes=["events:write"])[1],
    }
    ids = {
        "slug": "shop",
        "invoice": invoice.pk,
        "change": downgrade.json()["id"],
        "endpoint": endpoint.public_id,
        "delivery": delivery.public_id,
        "ticket_dispute": dispute.pk,
        "anomaly": anomaly.pk,
    }
    return keys, ids


def call(client, method, name, ids, **headers):
    path, body, _ = CASES[name][method]
    url = "/api/v1/" + path.format(**ids)
    with time_machine.travel(HALF, tick=False):
        return client.generic(
            method,
            url,
            data=None if body is None else __import__("json").dumps(body),
            content_type="application/json",
            **headers,
        )


def test_every_route_answers_each_kind_of_caller_as_it_must(world, django_user_model):
    """One world for all routes (every call here is refused or changes nothing), every
    failure reported at once."""
    keys, ids = world
    admin = django_user_model.objects.create_superuser("root@ops.example", password="pw-root-1")
    session = APIClient()
    session.force_login(admin)
    failures = []
    for name, method in ALL:
        try:
            _check_route(name, method, keys, ids, session)
        except AssertionError as exc:
            failures.append(f"{method} {name}: {exc}")
    assert not failures, "\n".join(failures)


def _check_route(name, method, keys, ids, session):
    tenant = CASES[name][method][2] == "tenant"

    # Partner B on A's objects: 404, and nothing else.
    if tenant:
        response = call(client_with_key(keys["B"]), method, name, ids)
        assert response.status_code == 404, response.content[:300]
        assert response.json()["error"]["code"] == "not_found"

    # A read-only key may read, never write.
    response = call(client_with_key(keys["read"]), method, name, ids)
    if method == "GET":
        assert response.status_code < 400, response.content[:300]
    else:
        assert response.status_code == 403, response.content[:300]
        assert response.json()["error"]["code"] == "insufficient_scope"

    # An ingest-only key reaches the event stream and nothing else.
    response = call(client_with_key(keys["events"]), method, name, ids)
    if name == "api-events":
        assert response.status_code == 202, response.content[:300]
    else:
        assert response.status_code == 403, response.content[:300]

    # A browser session, even a superuser's, is not an API key.
    response = call(session, method, name, ids)
    assert response.status_code == 401, response.content[:300]
    assert response.json()["error"]["code"] == "unauthenticated"

    # Every POST checks its Idempotency-Key before doing anything.
    if method == "POST":
        response = call(
            client_with_key(keys["A"]), method, name, ids, HTTP_IDEMPOTENCY_KEY="bad key\t"
        )
        assert response.status_code == 400, response.content[:300]
        assert response.json()["error"]["code"] == "invalid_idempotency_key"


def test_lists_show_only_the_callers_objects(world):
    keys, ids = world
    rival = client_with_key(keys["B"])
    with time_machine.travel(HALF, tick=False):
        assert rival.get("/api/v1/accounts").json()["results"] == []
        assert rival.get("/api/v1/webhook-endpoints").json()["results"] == []
        assert rival.get("/api/v1/webhook-deliveries").json()["results"] == []
        mine = client_with_key(keys["A"]).get("/api/v1/webhook-deliveries").json()["results"]
    assert [d["id"] for d in mine] == [ids["delivery"]]

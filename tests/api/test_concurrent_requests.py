"""Concurrent partner API requests on PostgreSQL (issue 20, item 8): the same Idempotency-Key
sent at once, and one subscription upgraded by many requests at once. Real threads, each with
its own database connection, so the races are PostgreSQL's own, not simulated."""

from datetime import UTC, datetime

import pytest
import time_machine
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.models import Account, IdempotencyRecord
from billing.models import Invoice, InvoiceReason
from billing.run import run_billing
from plans.models import Subscription
from tests.billing.test_money_safety import in_threads
from tests.conftest import client_with_key

T0 = datetime(2026, 11, 1, tzinfo=UTC)  # a 30-day period: Nov 1 → Dec 1
HALF = datetime(2026, 11, 16, tzinfo=UTC)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def raw_key(partner) -> str:
    _, raw = account_services.api_key_create(partner=partner, name="race")
    return raw


def new_account(**overrides) -> dict:
    body = {
        "slug": "bloom",
        "name": "Bloom Cosmetics",
        "billing_email": "billing@bloom.example",
        "currency": "USD",
        "plan": "basic",
        "interval": "month",
    }
    return body | overrides


def post_in_threads(raw_key: str, n: int, path: str, body: dict, **headers) -> list:
    def send(i):
        client: APIClient = client_with_key(raw_key)
        return client.post(path, body, format="json", **headers)

    return in_threads(n, send)


def test_one_idempotency_key_sent_at_once_answers_the_first_response_or_409(catalog, raw_key):
    responses = post_in_threads(
        raw_key, 20, "/api/v1/accounts", new_account(), HTTP_IDEMPOTENCY_KEY="same-key"
    )
    assert not [r for r in responses if isinstance(r, Exception)], responses
    first = [r for r in responses if r.status_code == 201 and "Idempotent-Replayed" not in r]
    assert len(first) == 1, sorted(r.status_code for r in responses)
    for response in responses:
        if response.status_code == 201:
            assert response.json() == first[0].json()
        else:
            assert response.status_code == 409, response.json()
            error = response.json()["error"]
            assert error["code"] == "idempotency_key_in_progress"
            assert "still being processed" in error["message"]
    assert Account.objects.filter(slug="bloom").count() == 1


def test_one_idempotency_key_whose_first_request_fails_is_never_a_500(catalog, raw_key):
    """A failed request releases its key (it may be retried); a request that found the key
    claimed and then released used to read the released row (DoesNotExist, 500)."""
    bad = new_account(plan="gold")
    responses = post_in_threads(raw_key, 30, "/api/v1/accounts", bad, HTTP_IDEMPOTENCY_KEY="k")
    assert not [r for r in responses if isinstance(r, Exception)], responses
    codes = {(r.status_code, r.json()["error"]["code"]) for r in responses}
    assert codes <= {(400, "invalid"), (409, "idempotency_key_in_progress")}, codes
    assert (400, "invalid") in codes
    assert not IdempotencyRecord.objects.exists()  # released: the key may be used again


@pytest.fixture
def shop(make_account, raw_key):
    with time_machine.travel(T0, tick=False):
        account = make_account(slug="shop", plan="basic", addons=[("voice", "voice-75")])
    run_billing(as_of=T0)
    return account


@pytest.mark.parametrize(
    "body",
    [{"plan": "pro"}, {"addons": [{"addon": "voice", "tier": "voice-250"}]}],
    ids=["plan", "addon_tier"],
)
def test_P6_twenty_upgrades_at_once_make_one_upgrade_and_409s(shop, raw_key, body):
    with time_machine.travel(HALF, tick=False):
        responses = post_in_threads(raw_key, 20, "/api/v1/accounts/shop/subscription/changes", body)
    assert not [r for r in responses if isinstance(r, Exception)], responses
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * 19, [r.json() for r in responses if r.status_code != 201]
    for response in responses:
        if response.status_code == 409:
            error = response.json()["error"]
            assert error["code"] == "no_change" and "already" in error["message"], error
    assert Invoice.objects.filter(account=shop, reason=InvoiceReason.UPGRADE).count() == 1
    subscription = Subscription.objects.get(account=shop)
    if "plan" in body:
        assert subscription.plan.code == "pro"
    else:
        assert subscription.addons.get().tier.code == "voice-250"

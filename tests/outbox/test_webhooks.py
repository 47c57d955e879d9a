"""Outbound webhooks: the outbox in the change's transaction, per-account order, signatures
(checked with the verifier partners copy from docs/api.md), retries with backoff, replay."""

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from accounts import services as account_services
from billing import changes
from billing.run import run_billing
from outbox import delivery as sending
from outbox import services, signing
from outbox.models import Delivery, Event
from tests.conftest import client_with_key

T0 = datetime(2026, 11, 1, tzinfo=UTC)
HALF = datetime(2026, 11, 16, tzinfo=UTC)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def docs_verifier():
    """The verifier as printed in docs/api.md: what a partner pastes into their receiver."""
    text = DOCS.read_text()
    block = re.search(r"```python\n(import hashlib\n.*?def verify_webhook\(.*?)```", text, re.S)
    assert block, "docs/api.md lost its verify_webhook example"
    namespace: dict = {}
    exec(block.group(1), namespace)  # noqa: S102 (our own docs)
    return namespace["verify_webhook"]


class Receiver:
    """Stands in for the partner's server: records what arrives, answers what it is told."""

    def __init__(self):
        self.received: list[tuple[str, bytes, dict]] = []
        self.answers: list[int | Exception] = []

    def __call__(self, url, body, headers):
        self.received.append((url, body, headers))
        answer = self.answers.pop(0) if self.answers else 200
        if isinstance(answer, Exception):
            raise answer
        return answer

    def events(self):
        return [json.loads(body) for _, body, _ in self.received]


@pytest.fixture
def receiver(monkeypatch):
    fake = Receiver()
    monkeypatch.setattr(sending, "http_post", fake)
    return fake


@pytest.fixture
def shop(make_account):
    with time_machine.travel(T0, tick=False):
        account = make_account(slug="shop", plan="basic")
    return account


@pytest.fixture
def endpoint(partner):
    found, secret = services.endpoint_create(partner=partner, url="https://hooks.example/in")
    return found, secret


def upgrade(account, plan="pro"):
    with time_machine.travel(HALF, tick=False):
        return changes.subscription_change(
            account=account, request=changes.ChangeRequest(plan=plan)
        )


def test_a_change_writes_its_events_in_its_own_transaction(shop, endpoint):
    upgrade(shop)
    types = list(Event.objects.order_by("sequence").values_list("type", "sequence"))
    # The first period's fees, then the upgrade's invoice, then the change itself.
    assert types == [
        ("invoice.finalized", 1),
        ("invoice.finalized", 2),
        ("subscription.changed", 3),
    ]
    changed = Event.objects.get(type="subscription.changed")
    assert changed.data["subscription"]["plan"] == "pro" and changed.data["account"] == "shop"
    assert Delivery.objects.filter(endpoint=endpoint[0]).count() == 3

    # A change that rolls back leaves no event behind.
    with pytest.raises(RuntimeError), transaction.atomic():
        services.outbox_emit(account_id=shop.pk, type="entitlement.changed", data={})
        raise RuntimeError("the change failed")
    assert Event.objects.count() == 3


def test_accounts_whose_partner_has_no_endpoint_cost_one_query_and_write_nothing(shop):
    def payload():
        raise AssertionError("a payload is built only for a listening endpoint")

    with CaptureQueriesContext(connection) as queries:
        written = services.outbox_emit_many(
            events=[services.Pending(shop.pk, "invoice.finalized", payload) for _ in range(50)]
        )
    assert written == 0 and len(queries) == 1
    assert not Event.objects.exists()


def test_a_batch_is_a_few_statements_whatever_its_size(make_account, partner, endpoint):
    accounts = [make_account(slug=f"shop{i}") for i in range(30)]
    Event.objects.all().delete()

    def emit(n):
        pending = [
            services.Pending(accounts[i % len(accounts)].pk, "invoice.finalized", {"n": i})
            for i in range(n)
        ]
        with CaptureQueriesContext(connection) as queries, transaction.atomic():
            services.outbox_emit_many(events=pending)
        return len(queries)

    assert emit(3) == emit(90)  # endpoints, sequences, events, deliveries (+ savepoints)
    # Each account's events are numbered 1, 2, 3... in the order they were emitted.
    for account in accounts:
        numbers = list(
            Event.objects.filter(account=account).order_by("pk").values_list("sequence", "data")
        )
        assert [s for s, _ in numbers] == list(range(1, len(numbers) + 1))
        assert [d["n"] for _, d in numbers] == sorted(d["n"] for _, d in numbers)


def test_closing_periods_announces_each_invoice(make_account, partner, endpoint, receiver):
    with time_machine.travel(T0, tick=False):
        for i in range(3):
            make_account(slug=f"close{i}")
    run_billing(as_of=T0)
    finalized = Event.objects.filter(type="invoice.finalized")
    assert sorted(e.data["account"] for e in finalized) == ["close0", "close1", "close2"]


def test_deliveries_are_signed_and_the_docs_verifier_accepts_them(shop, endpoint, receiver):
    _, secret = endpoint
    upgrade(shop)
    sending.endpoint_deliver(endpoint_id=endpoint[0].pk)
    verify = docs_verifier()
    assert len(receiver.received) == 3
    for url, body, headers in receiver.received:
        assert url == "https://hooks.example/in"
        header = headers[signing.HEADER]
        assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header)
        assert verify(secret, body, header)
        assert not verify("whsec_other", body, header)
        assert not verify(secret, body.replace(b"shop", b"shoq"), header)
        old = int(header[2:].split(",")[0]) - 600  # replayed 10 minutes later
        stale = signing.sign(secret=secret, body=body, timestamp=old)
        assert not verify(secret, body, stale)
    assert [e["sequence"] for e in receiver.events()] == [1, 2, 3]
    assert set(Delivery.objects.values_list("status", flat=True)) == {"delivered"}


def test_failures_back_off_exponentially_hold_later_events_and_give_up_after_3_days(
    shop, endpoint, receiver
):
    endpoint_id = endpoint[0].pk
    now = datetime(2026, 11, 20, tzinfo=UTC)
    with time_machine.travel(now, tick=False):
        for n in (1, 2):
            services.outbox_emit(account_id=shop.pk, type="entitlement.changed", data={"n": n})
    first, second = Delivery.objects.order_by("sequence")

    receiver.answers = [500]
    assert sending.endpoint_deliver(endpoint_id=endpoint_id, as_of=now) == 1
    first.refresh_from_db()
    assert first.status == "pending" and first.attempts == 1 and first.last_status_code == 500
    assert first.next_attempt_at == now + timedelta(minutes=1)
    # The second event waits for the first: the partner gets them in order.
    assert len(receiver.received) == 1

    waits = []
    at = first.next_attempt_at
    while True:
        receiver.answers = [sending.requests.ConnectionError("refused") if len(waits) % 2 else 503]
        sending.endpoint_deliver(endpoint_id=endpoint_id, as_of=at)
        first.refresh_from_db()
        if first.status != "pending":
            break
        waits.append(first.next_attempt_at - at)
        at = first.next_attempt_at
    assert waits[:4] == [timedelta(minutes=m) for m in (2, 4, 8, 16)]
    assert max(waits) == timedelta(hours=6)
    assert first.status == "failed" and at <= first.created_at + timedelta(days=3)
    assert "refused" in first.last_error or first.last_status_code == 503
    assert at > first.created_at + timedelta(days=3) - timedelta(hours=6)

    # Given up on, the first no longer holds the second back.
    receiver.answers = []
    sending.endpoint_deliver(endpoint_id=endpoint_id, as_of=at)
    second.refresh_from_db()
    assert second.status == "delivered"
    assert receiver.events()[-1]["data"]["n"] == 2


def test_endpoints_and_the_delivery_log_through_the_api(shop, partner, receiver):
    api = client_with_key(account_services.api_key_create(partner=partner)[1])
    created = api.post(
        "/api/v1/webhook-endpoints", {"url": "https://hooks.example/api"}, format="json"
    )
    assert created.status_code == 201, created.json()
    secret, endpoint_id = created.json()["secret"], created.json()["id"]
    assert secret.startswith("whsec_")
    listed = api.get("/api/v1/webhook-endpoints").json()["results"]
    assert [e["id"] for e in listed] == [endpoint_id] and "secret" not in listed[0]
    assert "secret" not in api.get(f"/api/v1/webhook-endpoints/{endpoint_id}").json()

    bad = api.post("/api/v1/webhook-endpoints", {"url": "ftp://x"}, format="json")
    assert bad.status_code == 400 and "url" in bad.json()["error"]["details"]["fields"]

    receiver.answers = [500]
    upgrade(shop)
    sending.endpoint_deliver(endpoint_id=Delivery.objects.first().endpoint_id, as_of=HALF)
    log = api.get("/api/v1/webhook-deliveries?status=pending").json()["results"]
    assert len(log) == 3  # the first failed, the two after it wait
    failed = next(d for d in log if d["attempts"] == 1)
    assert failed["last_status_code"] == 500 and failed["event"]["sequence"] == 1
    detail = api.get(f"/api/v1/webhook-deliveries/{failed['id']}").json()
    assert detail["body"]["type"] == "invoice.finalized" and detail["body"]["sequence"] == 1
    assert api.get("/api/v1/webhook-deliveries?status=bogus").status_code == 400

    # Replay: sent again at once, as its own entry in the log.
    replay = api.post(f"/api/v1/webhook-deliveries/{failed['id']}/replay")
    assert replay.status_code == 201, replay.json()
    assert replay.json()["replay_of"] == failed["id"]
    sending.endpoint_deliver(endpoint_id=Delivery.objects.first().endpoint_id)
    again = api.get(f"/api/v1/webhook-deliveries/{replay.json()['id']}").json()
    assert again["status"] == "delivered"
    assert docs_verifier()(
        secret, receiver.received[-1][1], receiver.received[-1][2][signing.HEADER]
    )

    # Deleted: pending deliveries are canceled, the endpoint is gone, the log stays.
    services.outbox_emit(account_id=shop.pk, type="entitlement.changed", data={})
    assert api.delete(f"/api/v1/webhook-endpoints/{endpoint_id}").status_code == 204
    assert api.get(f"/api/v1/webhook-endpoints/{endpoint_id}").status_code == 404
    statuses = [d["status"] for d in api.get("/api/v1/webhook-deliveries").json()["results"]]
    assert statuses == ["canceled"] + ["delivered"] * 4  # newest first


def test_an_account_key_does_not_manage_webhooks(account_api):
    response = account_api.get("/api/v1/webhook-endpoints")
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"


def test_status_changes_pauses_and_credit_notes_are_announced(shop, endpoint):
    from billing import invoicing
    from billing.models import Invoice
    from metering import limits
    from plans.services import subscription_transition

    run_billing(as_of=T0)
    invoice = Invoice.objects.get(account=shop)
    at = T0 + timedelta(days=2)
    invoicing.invoice_transition(invoice=invoice, to="past_due", reason="card declined", at=at)
    subscription = shop.subscriptions.get()
    subscription_transition(subscription_id=subscription.pk, to="suspended", reason="F4", at=at)
    invoicing.invoice_settle(invoice=invoice, reason="paid", at=at)  # reactivates too
    invoicing.credit_note_issue(invoice=invoice, amount_minor=100, description="goodwill", at=at)
    pause_until = datetime(2026, 12, 1, tzinfo=UTC)
    limits._Entitlements({shop.pk}).set(shop.pk, "ai_agents", paused_until=pause_until)
    assert limits.entitlements_expire(as_of=pause_until) == 1

    events = list(Event.objects.order_by("sequence").values_list("sequence", "type", "data"))
    assert [(s, t) for s, t, _ in events] == [
        (1, "invoice.finalized"),
        (2, "invoice.payment_failed"),
        (3, "subscription.suspended"),
        (4, "invoice.paid"),
        (5, "subscription.reactivated"),
        (6, "credit_note.issued"),
        (7, "entitlement.changed"),
        (8, "entitlement.changed"),
    ]
    assert [d["state"] for _, t, d in events if t == "entitlement.changed"] == ["paused", "active"]
    assert events[5][2]["invoice"]["kind"] == "credit_note"

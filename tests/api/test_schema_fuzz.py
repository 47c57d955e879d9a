"""Schemathesis over the published schema (/api/schema/): every operation is fuzzed through
the WSGI app with a partner key, with generated and negated inputs, half of them aimed at real
objects (the account, its invoice, the webhook endpoint...). No answer may be a 5xx, break the
schema (body, status code, content type, headers) or fall outside what it documents.

Deterministic (derandomized) so CI is reproducible; ~30 s. The count of cases is printed.
"""

import json
import logging
from datetime import UTC, datetime

import pytest
import schemathesis
import time_machine
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from werkzeug.test import Client

from accounts import services as account_services
from billing.models import Invoice
from billing.run import run_billing
from outbox import services as outbox_services
from outbox.models import Delivery, Endpoint

CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
]
EXAMPLES_PER_OPERATION = 20
T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def wsgi_app():
    """The real WSGI app, minus what Django's test client also turns off: closing the
    database connection at the end of each request (it holds the test's transaction)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield get_wsgi_application()
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def real_objects(make_account, partner, stripe_standin, settings, caplog):
    """Path parameters that name existing objects of the key's partner."""
    settings.API_RATE_LIMITS = {"api": 10**6, "ingest": 10**6}
    caplog.set_level(logging.ERROR, logger="django.request")  # 4xx by the hundred; restored
    with time_machine.travel(T0, tick=False):
        account = make_account(slug="shop", plan="pro")
    run_billing(as_of=T0)
    endpoint, _ = outbox_services.endpoint_create(partner=partner, url="https://hooks.example/f")
    outbox_services.outbox_emit(account_id=account.pk, type="entitlement.changed", data={})
    return {
        "slug": "shop",
        "invoice_id": Invoice.objects.filter(account=account).first().pk,
        "endpoint_id": endpoint.public_id,
        "delivery_id": Delivery.objects.get().public_id,
        "ticket": "T1",
        "change_id": 1,
    }


def test_the_api_holds_its_schema_under_fuzzing(
    partner, real_objects, wsgi_app, monkeypatch, capsys
):
    from outbox import delivery

    monkeypatch.setattr(delivery, "http_post", lambda url, body, headers: 200)
    # Fetched through the same WSGI app (Django's test client would reconnect the signal).
    document = json.loads(Client(wsgi_app).get("/api/schema/?format=json").get_data())
    schema = schemathesis.openapi.from_dict(document)
    app = wsgi_app
    _, raw = account_services.api_key_create(partner=partner)
    auth = {"Authorization": f"Bearer {raw}"}
    counts: dict[str, int] = {}
    failures: list[str] = []

    for result in schema.get_all_operations():
        operation = result.ok()
        names = {p.name for p in operation.path_parameters}
        fixed = {name: real_objects[name] for name in names}
        strategies = [
            operation.as_strategy(generation_mode=mode)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        ]
        if fixed:
            strategies.append(
                operation.as_strategy(
                    generation_mode=GenerationMode.POSITIVE, path_parameters=fixed
                )
            )

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=st.one_of(strategies))
        def run(case):
            response = case.call(app=app, headers=auth)
            case.validate_response(response, checks=CHECKS, headers=auth)
            counts[case.operation.label] = counts.get(case.operation.label, 0) + 1

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # every operation is tried and reported
            failures.append(f"{operation.label}: {exc}")

    total = sum(counts.values())
    with capsys.disabled():  # shown in CI's log, not only on failure
        print(f"\nschemathesis: {total} cases over {len(counts)} operations")
    assert not failures, "\n\n".join(failures)
    operations = sum(
        method in ("get", "post", "put", "delete")
        for path in document["paths"].values()
        for method in path
    )
    assert len(counts) == operations and total >= operations * 10


def test_stateful_sequences_follow_the_schema_links(partner, real_objects, wsgi_app, capsys):
    """Create an account then read it, change its plan then cancel the change, register an
    endpoint then delete it...: the links published in the schema, walked by Schemathesis."""
    document = json.loads(Client(wsgi_app).get("/api/schema/?format=json").get_data())
    _, raw = account_services.api_key_create(partner=partner)
    auth = {"Authorization": f"Bearer {raw}"}
    steps = []

    class Machine(schemathesis.openapi.from_dict(document).as_state_machine()):
        def __init__(self):
            super().__init__()
            self.live_endpoints = set(
                Endpoint.objects.filter(deleted_at=None).values_list("pk", flat=True)
            )

        def teardown(self):
            # Every example starts from the same webhook endpoints: the lists the links draw
            # from must not depend on what earlier examples created or deleted, or Hypothesis
            # replaying an example draws differently (FlakyStrategyDefinition).
            Endpoint.objects.filter(deleted_at=None).exclude(pk__in=self.live_endpoints).update(
                deleted_at=datetime.now(UTC)
            )
            Endpoint.objects.filter(pk__in=self.live_endpoints).update(deleted_at=None)
            super().teardown()

        def get_call_kwargs(self, case):
            return {"app": wsgi_app, "headers": auth}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            steps.append(case.operation.label)
            case.validate_response(response, checks=CHECKS, headers=auth)

    Machine.run(
        settings=settings(
            max_examples=25,
            stateful_step_count=5,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    with capsys.disabled():
        print(f"\nschemathesis stateful: {len(steps)} calls over {len(set(steps))} operations")
    assert len(set(steps)) > 3

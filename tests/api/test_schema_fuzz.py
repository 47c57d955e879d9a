"""Schemathesis over the published schema (/api/schema/): every operation is fuzzed through
the WSGI app with a partner key. No answer may be a 5xx, break the schema (body, status code,
content type, headers) or fall outside what it documents; a request the schema forbids must be
refused and one it allows accepted (schemathesis.toml says which refusals are business ones:
404 for an object that does not exist, 409 for a state conflict; schema_hooks.py, what the
schema cannot state).

Per operation: an even spread of the coverage phase's cases (boundary values of every field,
each field missing, methods the path does not serve), then generated and negated inputs, some
aimed at real objects (the account, its invoice, the webhook endpoint...). Then the stateful
walk of the schema's links, where a deleted object must be gone and a created one found. Every
case starts from the same data (a savepoint, rolled back).

Deterministic (derandomized) so CI is reproducible; under a minute. The counts of cases and of
failures by check are printed. SCHEMA_FUZZ_EXAMPLES raises the cases per operation (`make
fuzz-api`; docs/api.md, "The schema under fuzzing").
"""

import logging
import os
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import schemathesis
import time_machine
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.generation.drivers import CoverageGenerator
from schemathesis.generation.feedback import FeedbackSources
from schemathesis.generation.overrides import Override
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ensure_resource_availability,
    missing_required_header,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
    use_after_free,
)

from accounts import services as account_services
from billing.models import Invoice
from billing.run import run_billing
from metering.holds import holds_create
from metering.models import UsageAnomaly
from outbox import services as outbox_services
from outbox.models import Delivery
from tests.api import schema_hooks

CONFIG = Path(__file__).resolve().parents[2] / "schemathesis.toml"
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    missing_required_header,
    unsupported_method,
    schema_hooks.events_rejected_in_band,
]
# The runs' key may do everything: refunds too, which no key may do by default.
EVERY_WRITE = ["read", "write", "refunds:write"]
# Only a walk knows what it created or deleted before.
STATEFUL_CHECKS = [*CHECKS, use_after_free, ensure_resource_availability]
BUILT_IN = {check.__name__ for check in STATEFUL_CHECKS} - {"events_rejected_in_band"}
EXAMPLES_PER_OPERATION = int(os.environ.get("SCHEMA_FUZZ_EXAMPLES", "20"))
# The coverage phase draws up to ~2,000 cases for one operation (POST /events: every field of
# every event type at its bounds); CI sends an even spread of them.
COVERAGE_PER_OPERATION = 3 * EXAMPLES_PER_OPERATION
T0 = datetime(2026, 11, 1, tzinfo=UTC)


class Tally:
    """Cases sent and failures by check, kept going after a failure so that one run lists
    every disagreement between the schema and the code, not the first."""

    def __init__(self, checks) -> None:
        self.cases: Counter[str] = Counter()
        self.failures: Counter[str] = Counter({check.__name__: 0 for check in checks})
        self.samples: dict[tuple, str] = {}
        self.started = time.monotonic()

    def validate(self, case, response, *, checks, **kwargs) -> None:
        self.cases[case.operation.label] += 1
        # schemathesis.toml may turn a check off for one operation.
        config = case.operation.schema.config.checks_config_for(operation=case.operation)
        enabled = [
            check
            for check in checks
            if check.__name__ not in BUILT_IN or config.get_by_name(name=check.__name__).enabled
        ]
        try:
            case.validate_response(response, checks=enabled, **kwargs)
        except FailureGroup as group:
            for failure in group.exceptions:
                check = _check_name(failure)
                self.failures[check] += 1
                key = (check, case.operation.label, response.status_code, _error_code(response))
                self.samples.setdefault(key, f"{check} on {case.operation.label}: {group}")

    def report(self, name: str) -> str:
        by_check = ", ".join(f"{check} {n}" for check, n in sorted(self.failures.items()))
        return (
            f"\nschemathesis {name}: {self.cases.total()} cases over {len(self.cases)} "
            f"operations in {time.monotonic() - self.started:.0f} s; failures by check: "
            f"{by_check}"
        )


def _error_code(response) -> str | None:
    try:
        return response.json()["error"]["code"]
    except (ValueError, TypeError, KeyError):
        return None


def _check_name(failure: Failure) -> str:
    return type(failure).checks[0] if type(failure).checks else type(failure).__name__


def drops_the_key(case) -> bool:
    """Whether the case is a negative one without the API key (the schema's security is a
    header Schemathesis leaves out): the key is then not added back, or a 200 would read as
    a request without a key accepted."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_negative:
        return False
    data = meta.phase.data
    named = {getattr(data, "parameter", None)}
    named |= {mutation.parameter for mutation in getattr(data, "mutations", ())}
    return "Authorization" in named


def load_schema(app):
    # Fetched through the same WSGI app (Django's test client would reconnect the signal);
    # checks that send a request of their own send it there too.
    config = SchemathesisConfig.from_path(str(CONFIG))
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", app, config=config)
    return schema.raw_schema, schema


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
def real_objects(make_account, partner, stripe_standin, shopify_standin, settings, caplog):
    """Path parameters that name existing objects of the key's partner; the clock ten days
    into the account's first cycle. Shopify is the stand-in: a drawn Shopify account asks it
    for the app subscription (a shop it does not know: 409 `shopify_refused`)."""
    # Raised so that no answer is a 429: a 429 is never an acceptable refusal here.
    settings.API_RATE_LIMITS = {"api": 10**6, "ingest": 10**6}
    caplog.set_level(logging.ERROR, logger="django.request")  # 4xx by the hundred; restored
    with time_machine.travel(T0, tick=False):
        account = make_account(slug="shop", plan="pro")
        run_billing(as_of=T0)
    # The runs happen ten days into the account's first cycle whatever today's date, so the
    # answers (a cycle under way, usage so far) do not depend on the day CI runs.
    with time_machine.travel(T0 + timedelta(days=10), tick=True):
        endpoint, _ = outbox_services.endpoint_create(
            partner=partner, url="https://hooks.example/f"
        )
        outbox_services.outbox_emit(account_id=account.pk, type="entitlement.changed", data={})
        # A usage spike open for review, and ticket T1 held as a suspected loop.
        now = T0 + timedelta(days=10)
        anomaly = UsageAnomaly.objects.create(
            account=account,
            meter="helpdesk_tickets",
            day=now.date(),
            observed=400,
            baseline=40,
            spread=2,
            weeks=8,
            status="open",
            opened_at=now,
        )
        holds_create({(account.pk, "ticket", "T1"): "Suspected loop"}, at=now)
        yield {
            "slug": "shop",
            "invoice_id": Invoice.objects.filter(account=account).first().pk,
            "endpoint_id": endpoint.public_id,
            "delivery_id": Delivery.objects.get().public_id,
            "ticket": "T1",
            "change_id": 1,
            "dispute_id": 1,
            "anomaly_id": anomaly.pk,
        }


def test_the_api_holds_its_schema_under_fuzzing(
    partner, real_objects, wsgi_app, monkeypatch, capsys
):
    from outbox import delivery

    monkeypatch.setattr(delivery, "http_post", lambda url, body, headers: 200)
    document, schema = load_schema(wsgi_app)
    _, raw = account_services.api_key_create(partner=partner, scopes=EVERY_WRITE)
    auth = {"Authorization": f"Bearer {raw}"}
    tally = Tally(CHECKS)
    errors: list[str] = []

    def send(case) -> None:
        # Each case starts from the same data, whatever the cases before it changed (a
        # subscription changed, an endpoint deleted): a failure replays from its case alone.
        key = {} if drops_the_key(case) else auth
        savepoint = transaction.savepoint()
        try:
            response = case.call(app=wsgi_app, headers=key)
            tally.validate(
                case,
                response,
                checks=CHECKS,
                headers=key,
                transport_kwargs={"headers": key},  # for checks that send a request of their own
            )
        finally:
            # What the checks' own requests wrote too. Then released: a savepoint rolled back
            # to stays open, and thousands nested ran PostgreSQL out of lock slots.
            transaction.savepoint_rollback(savepoint)
            transaction.savepoint_commit(savepoint)

    for result in schema.get_all_operations():
        operation = result.ok()
        names = {p.name for p in operation.path_parameters}
        fixed = {name: real_objects[name] for name in names}

        coverage = CoverageGenerator(
            operation=operation,
            generation_modes=list(GenerationMode),
            generation_config=schema.config.generation_for(operation=operation, phase="coverage"),
            auth_storage=None,
            override=Override(path_parameters=fixed),
            feedback=FeedbackSources(),
        )
        cases = list(coverage)
        # An even spread of at most COVERAGE_PER_OPERATION of them (all, in a longer run).
        for case in cases[:: -(-len(cases) // COVERAGE_PER_OPERATION)]:
            send(case)

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
            send(case)

        try:
            run()
        except Exception as exc:  # every operation is tried and reported
            errors.append(f"{operation.label}: {exc!r}")

    with capsys.disabled():  # shown in CI's log, not only on failure
        print(tally.report("coverage and fuzzing"))
    assert not errors, "\n".join(errors)
    assert not tally.failures.total(), "\n\n".join(tally.samples.values())
    operations = sum(
        method in ("get", "post", "put", "patch", "delete")
        for path in document["paths"].values()
        for method in path
    )
    assert len(tally.cases) == operations  # every operation was sent cases...
    assert min(tally.cases.values()) >= 10  # ...and not one or two


def test_stateful_sequences_follow_the_schema_links(partner, real_objects, wsgi_app, capsys):
    """Create an account then read it, change its plan then cancel the change, register an
    endpoint then delete it...: the links published in the schema, walked by Schemathesis."""
    _, schema = load_schema(wsgi_app)
    _, raw = account_services.api_key_create(partner=partner, scopes=EVERY_WRITE)
    auth = {"Authorization": f"Bearer {raw}"}
    tally = Tally(STATEFUL_CHECKS)

    class Machine(schema.as_state_machine()):
        def __init__(self):
            super().__init__()
            self.savepoint = transaction.savepoint()

        def teardown(self):
            # Every example starts from the same data: what the links draw from must not
            # depend on what earlier examples created (a slug taken, an endpoint deleted), or
            # Hypothesis replaying an example draws differently (FlakyStrategyDefinition).
            transaction.savepoint_rollback(self.savepoint)
            transaction.savepoint_commit(self.savepoint)  # released: see `send` above
            super().teardown()

        def get_call_kwargs(self, case):
            return {"app": wsgi_app, "headers": {} if drops_the_key(case) else auth}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            tally.validate(
                case,
                response,
                checks=STATEFUL_CHECKS,
                headers=kwargs["headers"],
                transport_kwargs=kwargs,
                recorder=self.recorder,  # what the walk created and deleted before this call
            )

    Machine.run(
        settings=settings(
            max_examples=max(25, EXAMPLES_PER_OPERATION),
            stateful_step_count=5,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    with capsys.disabled():
        print(tally.report("stateful"))
    assert not tally.failures.total(), "\n\n".join(tally.samples.values())
    assert len(tally.cases) > 3

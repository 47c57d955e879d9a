"""JSON logs carry the ids of what was being done; /metrics shows the business figures and is
closed to the public, including the public that a proxy on the same host hands over from
loopback."""

import io
import json
import logging
import logging.config

import pytest
from django.test import RequestFactory

from billing_portal import logs
from billing_portal.celery import app
from operations import metrics

pytestmark = pytest.mark.django_db


@pytest.fixture
def json_lines():
    """Records as the production formatter renders them, one JSON object per line."""
    stream = io.StringIO()
    config = logs.logging_config(as_json=True, level="INFO")
    formatter = logging.config.dictConfigClass(config).configure_custom(
        dict(config["formatters"]["structured"])
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("billing.test")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)


def test_a_request_logs_json_with_its_request_and_account_and_answers_the_id(json_lines):
    def view(request, slug, invoice_id):
        logging.getLogger("billing.test").warning("charge refused")
        from django.http import HttpResponse

        return HttpResponse("ok")

    def handler(request):  # what Django does inside the middleware: resolve, then the view
        middleware.process_view(request, view, (), {"slug": "shop", "invoice_id": 42})
        return view(request, "shop", 42)

    middleware = logs.RequestContext(handler)
    request = RequestFactory().get("/billing/shop/invoices/42/retry", HTTP_X_REQUEST_ID="req-7")
    response = middleware(request)

    assert response["X-Request-ID"] == "req-7"
    [line] = json_lines()
    assert line["event"] == "charge refused" and line["level"] == "warning"
    assert line["request_id"] == "req-7"
    assert line["account"] == "shop" and line["invoice_id"] == 42
    assert line["logger"] == "billing.test" and line["timestamp"].endswith("Z")


def test_a_forged_request_id_is_replaced():
    assert logs.request_id_from("abc-123") == "abc-123"
    forged = logs.request_id_from('x"\n{"level": "critical"}')
    assert len(forged) == 32 and "\n" not in forged


def test_a_task_logs_its_id_name_and_the_ids_it_was_given(json_lines):
    task = app.tasks["billing.tasks.payment_collect_invoice"]
    logs.task_context_bind(task=task, task_id="t-1", args=(123,), kwargs={})
    try:
        logging.getLogger("billing.test").info("collecting")
    finally:
        import structlog

        structlog.contextvars.clear_contextvars()
    [line] = json_lines()
    assert line["task_id"] == "t-1"
    assert line["task"] == "billing.tasks.payment_collect_invoice"
    assert line["invoice_id"] == 123


def test_metrics_show_events_invoices_and_backlogs_to_a_scraper(client, settings, partner_api):
    settings.METRICS_TOKEN = "scrape-token-1"
    before = metrics.EVENTS.labels("rejected")._value.get()
    partner_api.post("/api/v1/events", {"events": [{"id": "bad"}]}, format="json")
    assert metrics.EVENTS.labels("rejected")._value.get() == before + 1

    response = client.get(
        "/metrics", HTTP_AUTHORIZATION="Bearer scrape-token-1", REMOTE_ADDR="203.0.113.9"
    )
    assert response.status_code == 200
    text = response.content.decode()
    for name in (
        'portal_events_received_total{outcome="rejected"}',
        "portal_reevaluation_backlog",
        "portal_reevaluation_lag_seconds",
        "portal_outbox_age_seconds",
        "portal_dunning_invoices",
        "portal_subscriptions_suspended",
        "django_http_requests_latency_seconds_by_view_method",
    ):
        assert name in text, name


def test_metrics_are_a_404_to_the_public_and_to_a_wrong_token(client, settings):
    settings.METRICS_TOKEN = "scrape-token-1"
    settings.METRICS_ALLOW_LOOPBACK = False
    outside = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/metrics", **outside).status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope", **outside).status_code == 404
    # The token alone, or under another scheme, is not a bearer token.
    assert client.get("/metrics", HTTP_AUTHORIZATION="scrape-token-1", **outside).status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Basic scrape-token-1").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="bearer scrape-token-1").status_code == 200


def test_without_a_token_configured_no_authorization_header_opens_metrics(client, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOW_LOOPBACK = False
    for header in ("Bearer ", "Bearer", ""):
        assert client.get("/metrics", HTTP_AUTHORIZATION=header).status_code == 404


PROXY_HEADERS = [
    {"HTTP_X_FORWARDED_FOR": "198.51.100.4"},
    {"HTTP_X_REAL_IP": "198.51.100.4"},
    {"HTTP_FORWARDED": "for=198.51.100.4;proto=https"},
]


@pytest.mark.parametrize("proxied", PROXY_HEADERS, ids=["x-forwarded-for", "x-real-ip", "forward"])
def test_metrics_behind_a_proxy_on_the_same_host_need_the_token(client, settings, proxied):
    """nginx on this host hands every visitor's request over from 127.0.0.1 (issue 22): a proxy
    header means the peer is the proxy, whatever METRICS_ALLOW_LOOPBACK says."""
    settings.METRICS_TOKEN = "scrape-token-1"
    settings.METRICS_ALLOW_LOOPBACK = True
    loopback = {"REMOTE_ADDR": "127.0.0.1", **proxied}
    anonymous = client.get("/metrics", **loopback)
    assert anonymous.status_code == 404
    assert b"portal_" not in anonymous.content
    scraper = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token-1", **loopback)
    assert scraper.status_code == 200
    assert b"portal_invoices" in scraper.content


def test_loopback_scrapes_without_a_token_only_when_the_setting_allows_it(client, settings):
    settings.METRICS_TOKEN = "scrape-token-1"
    settings.METRICS_ALLOW_LOOPBACK = True
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 404

    settings.METRICS_ALLOW_LOOPBACK = False  # production's default
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 404
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 404

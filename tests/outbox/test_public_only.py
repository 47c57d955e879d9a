"""Partner webhooks reach public addresses only (SSRF guard): refused at registration when the
URL names a private address, and at every delivery when the host resolves to one (the address
the socket connected to is checked before anything is sent)."""

import http.server
import threading

import pytest

from outbox import delivery as sending
from outbox import services
from outbox.models import Delivery, Endpoint
from outbox.public_only import host_refusal, is_public
from tests.billing.test_start_again import BACK, at  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.9", False),
        ("192.168.1.20", False),
        ("169.254.169.254", False),  # a cloud's metadata service
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1%eth0", False),
        ("fd00::7", False),
        ("::ffff:127.0.0.1", False),  # IPv4 loopback written as IPv6
    ],
)
def test_which_addresses_are_public(address, public):
    assert is_public(address) is public


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]:8443/hook",
        "https://localhost/hook",
        "https://api.localhost/hook",
        "https://10.0.0.7/hook",
    ],
)
def test_registering_an_endpoint_on_a_private_address_is_refused(url, partner_api, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    response = partner_api.post("/api/v1/webhook-endpoints", {"url": url}, format="json")
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["message"].startswith("Webhooks go to public addresses only: ")
    assert error["details"]["fields"] == {"url": ["Use a public host name or address."]}
    assert not Endpoint.objects.exists()


def test_a_public_name_is_registered_and_checked_when_connecting(partner_api, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    assert host_refusal("hooks.partner.example") is None
    response = partner_api.post(
        "/api/v1/webhook-endpoints", {"url": "https://hooks.partner.example/in"}, format="json"
    )
    assert response.status_code == 201


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self):  # noqa: N802 (the standard library's name)
        self.received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def loopback_receiver():
    """A partner receiver on 127.0.0.1, reached as 'localhost': a name that resolves to a
    private address, as a rebinding DNS answer would make a public-looking name do."""
    _Receiver.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{server.server_address[1]}/in", _Receiver.received
    server.shutdown()
    server.server_close()


def pending_delivery(partner, make_account, url) -> Delivery:
    """An endpoint stored as if its name had been public at registration, and one event."""
    Endpoint.objects.create(public_id="we_rebound", partner=partner, url=url, secret="whsec_x")
    shop = make_account(slug="shop")
    services.outbox_emit(account_id=shop.pk, type="entitlement.changed", data={"x": 1})
    return Delivery.objects.select_related("event", "endpoint").get()


@pytest.mark.parametrize("allow_private", [False, True])
def test_each_delivery_checks_the_address_it_connected_to(
    allow_private, partner, make_account, loopback_receiver, settings
):
    url, received = loopback_receiver
    settings.WEBHOOK_ALLOW_PRIVATE = allow_private
    delivery = pending_delivery(partner, make_account, url)
    with at(BACK):
        sent = sending.delivery_attempt(delivery=delivery, now=BACK)
    delivery.refresh_from_db()
    if allow_private:  # the demo: its receiver listens on 127.0.0.1
        assert sent and delivery.status == "delivered" and len(received) == 1
    else:
        assert not sent and received == []  # nothing reached the receiver
        assert delivery.status == "pending" and delivery.last_status_code is None
        assert delivery.last_error == (
            "localhost resolved to 127.0.0.1, which is not a public address: not sent"
        )

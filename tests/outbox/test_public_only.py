"""Partner webhooks reach public addresses only (SSRF guard): refused at registration when the
URL names an address that is not public; at every delivery the host is resolved once, every
address checked, and the socket opened only to a checked address. A refusal opens no socket
and reads the same whatever the name resolved to and whatever listens there (no port-scan
oracle for a partner who controls a name's DNS)."""

import http.server
import socket
import threading

import pytest
from django.utils import timezone

from outbox import delivery as sending
from outbox import public_only, services
from outbox.models import Delivery, Endpoint
from outbox.public_only import NOT_SENT, host_refusal

pytestmark = pytest.mark.django_db

_real_getaddrinfo = socket.getaddrinfo


@pytest.fixture(autouse=True)
def fresh_sessions():
    """Each test gets new sessions: no kept-alive connection from an earlier test's receiver."""
    sending._sessions.clear()
    yield
    sending._sessions.clear()


@pytest.fixture
def public_only_on(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False


class FakeDns:
    """A partner's DNS for names under partner.example: each lookup of a name takes the next
    answer in its list (the last one repeats), as a rebinding server would serve them."""

    def __init__(self, monkeypatch):
        self.answers: dict[str, list[list[str] | OSError]] = {}
        self.lookups: list[str] = []
        monkeypatch.setattr(socket, "getaddrinfo", self)

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):
        if host not in self.answers:
            return _real_getaddrinfo(host, port, family, type, proto, flags)
        self.lookups.append(host)
        queue = self.answers[host]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, OSError):
            raise answer
        return [
            (
                socket.AF_INET6 if ":" in ip else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (ip, port, 0, 0) if ":" in ip else (ip, port),
            )
            for ip in answer
        ]


@pytest.fixture
def dns(monkeypatch):
    return FakeDns(monkeypatch)


@pytest.fixture
def connects(monkeypatch):
    """Every socket connection attempted in the test, refused on the spot (nothing leaves)."""
    attempted: list[tuple] = []

    def refuse(sock, address):
        attempted.append(address)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempted


def deliveries_to(partner, make_account, *urls) -> list[Delivery]:
    """Endpoints stored as if their hosts had been accepted at registration (a name that was
    public then, or a literal saved before this check existed), and one event for each."""
    for n, url in enumerate(urls):
        Endpoint.objects.create(public_id=f"we_{n}", partner=partner, url=url, secret="whsec_x")
    shop = make_account(slug="shop")
    services.outbox_emit(account_id=shop.pk, type="entitlement.changed", data={"x": 1})
    return list(
        Delivery.objects.select_related("event", "endpoint").order_by("endpoint__public_id")
    )


def attempt(delivery: Delivery) -> Delivery:
    sending.delivery_attempt(delivery=delivery, now=timezone.now())
    delivery.refresh_from_db()
    return delivery


# --- registration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        pytest.param(
            "https://127.0.0.1/hook", "127.0.0.1 is a loopback address", id="ipv4_loopback"
        ),
        pytest.param("https://10.0.0.7/hook", "10.0.0.7 is a private address", id="ipv4_private"),
        pytest.param(
            "https://169.254.169.254/latest/meta-data/",
            "169.254.169.254 is a link-local address (cloud metadata services)",
            id="ipv4_metadata",
        ),
        pytest.param(
            "https://100.64.0.1/hook",
            "100.64.0.1 is a carrier-grade NAT address (100.64.0.0/10)",
            id="ipv4_cgnat",
        ),
        pytest.param(
            "https://198.18.0.1/hook",
            "198.18.0.1 is a benchmarking address (198.18.0.0/15)",
            id="ipv4_benchmarking",
        ),
        pytest.param(
            "https://192.0.2.1/hook",
            "192.0.2.1 is a documentation address",
            id="ipv4_documentation",
        ),
        pytest.param(
            "https://0.0.0.0/hook",
            "0.0.0.0 is an address of 'this network' (0.0.0.0/8)",
            id="ipv4_unspecified",
        ),
        pytest.param(
            "https://224.0.0.1/hook", "224.0.0.1 is a multicast address", id="ipv4_multicast"
        ),
        pytest.param(
            "https://240.0.0.1/hook",
            "240.0.0.1 is a reserved address (240.0.0.0/4)",
            id="ipv4_reserved",
        ),
        pytest.param(
            "https://255.255.255.255/hook",
            "255.255.255.255 is the broadcast address",
            id="ipv4_broadcast",
        ),
        pytest.param("https://[::1]:8443/hook", "::1 is a loopback address", id="ipv6_loopback"),
        pytest.param("https://[::]/hook", ":: is the unspecified address", id="ipv6_unspecified"),
        pytest.param(
            "https://[fe80::1]/hook", "fe80::1 is a link-local address", id="ipv6_link_local"
        ),
        pytest.param(
            "https://[fd00::7]/hook",
            "fd00::7 is a unique-local address (fc00::/7)",
            id="ipv6_unique_local",
        ),
        pytest.param(
            "https://[fec0::1]/hook",
            "fec0::1 is a site-local address (fec0::/10)",
            id="ipv6_site_local",
        ),
        pytest.param(
            "https://[ff02::1]/hook", "ff02::1 is a multicast address", id="ipv6_multicast"
        ),
        pytest.param(
            "https://[2001:db8::1]/hook",
            "2001:db8::1 is a documentation address",
            id="ipv6_documentation",
        ),
        pytest.param(
            "https://[::ffff:127.0.0.1]/hook",
            "::ffff:127.0.0.1 is an IPv4-mapped IPv6 address embedding 127.0.0.1, "
            "a loopback address",
            id="ipv4_mapped",
        ),
        pytest.param(
            "https://[::127.0.0.1]/hook",
            "::127.0.0.1 is an IPv4-compatible IPv6 address embedding 127.0.0.1, "
            "a loopback address",
            id="ipv4_compatible",
        ),
        pytest.param(
            "https://[64:ff9b::7f00:1]/hook",
            "64:ff9b::7f00:1 is a NAT64 address embedding 127.0.0.1, a loopback address",
            id="nat64",
        ),
        pytest.param(
            "https://[64:ff9b:1::808:808]/hook",
            "64:ff9b:1::808:808 is a local-use NAT64 address (64:ff9b:1::/48)",
            id="nat64_local_use",
        ),
        pytest.param(
            "https://[2002:7f00:1::1]/hook",
            "2002:7f00:1::1 is a 6to4 address embedding 127.0.0.1, a loopback address",
            id="6to4",
        ),
        pytest.param(
            "https://[2001:0:808:808::f7f7:fbfb]/hook",
            "2001:0:808:808::f7f7:fbfb is a Teredo address (2001::/32)",
            id="teredo",
        ),
        pytest.param("https://localhost/hook", "'localhost' is this machine", id="localhost"),
        pytest.param(
            "https://api.localhost/hook", "'api.localhost' is this machine", id="dot_localhost"
        ),
    ],
)
def test_registering_an_endpoint_on_an_address_that_is_not_public_is_refused(
    url, why, partner_api, public_only_on
):
    response = partner_api.post("/api/v1/webhook-endpoints", {"url": url}, format="json")
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["message"] == f"Webhooks go to public addresses only: {why}."
    assert error["details"]["fields"] == {"url": ["Use a public host name or address."]}
    assert not Endpoint.objects.exists()


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://8.8.8.8/hook", id="ipv4"),
        pytest.param("https://[2606:4700:4700::1111]/hook", id="ipv6"),
        pytest.param("https://[64:ff9b::808:808]/hook", id="nat64_of_public"),
        pytest.param("https://hooks.partner.example/in", id="name_checked_when_sending"),
    ],
)
def test_registering_a_public_address_or_a_name_is_accepted(url, partner_api, public_only_on):
    response = partner_api.post("/api/v1/webhook-endpoints", {"url": url}, format="json")
    assert response.status_code == 201, response.json()
    assert Endpoint.objects.get().url == url


def test_the_demo_setting_lets_a_loopback_endpoint_register(partner_api, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    response = partner_api.post(
        "/api/v1/webhook-endpoints", {"url": "https://127.0.0.1:9000/hook"}, format="json"
    )
    assert response.status_code == 201


def test_a_name_is_left_to_the_delivery_check():
    assert host_refusal("hooks.partner.example") is None


# --- delivery ------------------------------------------------------------------------------


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]] = []

    def do_POST(self):  # noqa: N802 (the standard library's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.headers["Host"], body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def loopback_receiver():
    """A partner receiver on 127.0.0.1: its port, and what it received as (Host, body)."""
    _Receiver.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], _Receiver.received
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("allow_private", [False, True])
def test_a_name_resolving_to_loopback_gets_nothing_unless_the_demo_allows_it(
    allow_private, partner, make_account, loopback_receiver, settings
):
    port, received = loopback_receiver
    settings.WEBHOOK_ALLOW_PRIVATE = allow_private
    (delivery,) = deliveries_to(partner, make_account, f"http://localhost:{port}/in")
    delivery = attempt(delivery)
    if allow_private:  # the demo: its receiver listens on 127.0.0.1
        assert delivery.status == "delivered" and len(received) == 1
    else:
        assert received == []
        assert delivery.status == "pending" and delivery.last_status_code is None
        assert delivery.last_error == NOT_SENT


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://localhost:8080/in", id="localhost"),
        pytest.param("https://rebound.partner.example/in", id="name_to_loopback"),
        pytest.param("https://metadata.partner.example/in", id="name_to_metadata"),
        pytest.param("https://mixed.partner.example/in", id="name_to_public_and_private"),
        pytest.param("https://nat64.partner.example/in", id="name_to_nat64_of_loopback"),
        pytest.param("https://unknown.partner.example/in", id="name_that_does_not_resolve"),
        pytest.param("https://[::127.0.0.1]/in", id="ipv4_compatible_literal"),
        pytest.param("https://[::ffff:10.0.0.1]/in", id="ipv4_mapped_literal"),
        pytest.param("https://[2002:a9fe:a9fe::1]/in", id="6to4_literal"),
        pytest.param("https://[fec0::1]/in", id="site_local_literal"),
        pytest.param("http://100.64.0.1/in", id="cgnat_literal"),
    ],
)
def test_a_refused_host_never_opens_a_socket(
    url, partner, make_account, dns, connects, public_only_on
):
    dns.answers.update(
        {
            "rebound.partner.example": [["127.0.0.1"]],
            "metadata.partner.example": [["169.254.169.254"]],
            "mixed.partner.example": [["8.8.8.8", "10.0.0.5"]],
            "nat64.partner.example": [["64:ff9b::7f00:1"]],
            "unknown.partner.example": [socket.gaierror(socket.EAI_NONAME, "Name not known")],
        }
    )
    (delivery,) = deliveries_to(partner, make_account, url)
    delivery = attempt(delivery)
    assert connects == []
    assert delivery.last_error == NOT_SENT
    assert delivery.status == "pending" and delivery.attempts == 1


def test_an_open_and_a_closed_internal_port_leave_the_same_log(
    partner, make_account, public_only_on
):
    listening = socket.create_server(("127.0.0.1", 0))
    listening.setblocking(False)
    closed = socket.create_server(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    try:
        to_open, to_closed = deliveries_to(
            partner,
            make_account,
            f"http://localhost:{listening.getsockname()[1]}/in",
            f"http://localhost:{closed_port}/in",
        )
        errors = [attempt(to_open).last_error, attempt(to_closed).last_error]
        with pytest.raises(BlockingIOError):
            listening.accept()  # no connection ever reached the open port
    finally:
        listening.close()
    assert errors[0].encode() == errors[1].encode() == NOT_SENT.encode()


def test_the_connection_goes_to_the_addresses_that_were_checked(
    partner, make_account, dns, connects, public_only_on
):
    # Public at the lookup, loopback at any later one: a second lookup would be a rebinding.
    dns.answers["hooks.partner.example"] = [
        ["93.184.215.14", "2606:2800:21f:cb07::1"],
        ["127.0.0.1"],
    ]
    (delivery,) = deliveries_to(partner, make_account, "https://hooks.partner.example/in")
    delivery = attempt(delivery)
    assert dns.lookups == ["hooks.partner.example"]
    assert connects == [("93.184.215.14", 443), ("2606:2800:21f:cb07::1", 443, 0, 0)]
    assert delivery.last_error.startswith("ConnectionError: ")
    assert "Connection refused" in delivery.last_error


def test_a_checked_name_is_delivered_over_the_pinned_connection(
    partner, make_account, dns, loopback_receiver, monkeypatch, public_only_on
):
    """The whole path through the public session, to a receiver standing in for a partner's
    server on the internet (so 127.0.0.1 is taken as public here, and only here)."""
    port, received = loopback_receiver
    rule = public_only.not_public_because
    monkeypatch.setattr(
        public_only, "not_public_because", lambda ip: None if ip == "127.0.0.1" else rule(ip)
    )
    dns.answers["hooks.partner.example"] = [["127.0.0.1"], ["10.9.9.9"]]
    (delivery,) = deliveries_to(partner, make_account, f"http://hooks.partner.example:{port}/in")
    delivery = attempt(delivery)
    assert delivery.status == "delivered" and delivery.last_status_code == 200
    assert [host for host, _ in received] == [f"hooks.partner.example:{port}"]
    assert dns.lookups == ["hooks.partner.example"]

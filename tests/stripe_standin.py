"""localstripe for tests: one server per test session (its own port and store file), flushed
between tests. Test-only helpers may use the stand-in's own routes (raw card numbers,
server-side 3-D Secure), which production code never does."""

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import stripe

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StandIn:
    def __init__(self, url: str):
        self.url = url
        self.client = stripe.StripeClient(
            "sk_test_standin", base_addresses={"api": url}, max_network_retries=0
        )

    def flush(self) -> None:
        request = urllib.request.Request(f"{self.url}/_config/data", method="DELETE")
        urllib.request.urlopen(request, timeout=10).read()  # noqa: S310 - loopback stand-in

    def card(self, number: str) -> str:
        """A payment method from a raw test number (the number decides the behaviour)."""
        method = self.client.v1.payment_methods.create(
            params={
                "type": "card",
                # Valid for years from whatever today is (never a date that will pass).
                "card": {
                    "number": number,
                    "exp_month": 12,
                    "exp_year": time.gmtime().tm_year + 4,
                    "cvc": "123",
                },
            }
        )
        return method.id

    def intents(self) -> list:
        return list(self.client.v1.payment_intents.list(params={"limit": 100}).auto_paging_iter())

    def authenticate(self, intent_id: str, *, success: bool) -> None:
        """Complete or fail 3-D Secure server-side, as the customer would on the bank's page."""
        intent = self.client.v1.payment_intents.retrieve(intent_id)
        outcome = "true" if success else "false"
        body = f"client_secret={intent.client_secret}&success={outcome}".encode()
        request = urllib.request.Request(
            f"{self.url}/v1/payment_intents/{intent_id}/_authenticate",
            data=body,
            method="POST",
            headers={"Authorization": "Bearer sk_test_standin"},
        )
        urllib.request.urlopen(request, timeout=10).read()  # noqa: S310 - loopback stand-in


def start() -> tuple[subprocess.Popen, StandIn]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "scripts" / "localstripe_server.py"),
            "--port",
            str(port),
            "--in-memory",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stand_in = StandIn(f"http://127.0.0.1:{port}")
    for _ in range(100):
        try:
            stand_in.flush()
            return process, stand_in
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("localstripe did not start")

"""The Shopify stand-in for tests: one server per test session on a free port, reset between
tests, and a small client for its control API (shops, clock, the merchant's clicks, faults)."""

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from tests.stripe_standin import free_port

ROOT = Path(__file__).resolve().parent.parent
API_SECRET = "shpss_test_standin_secret"
API_VERSION = "2025-04"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Keep the 302 Shopify answers after a decision: its Location is what the test checks."""

    def redirect_request(self, *args, **kwargs):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


class StandInError(Exception):
    """The stand-in refused a control request; the message is its own."""


class StandIn:
    def __init__(self, url: str, *, api_secret: str = API_SECRET):
        self.url = url
        self.api_secret = api_secret
        # settings.SHOPIFY_ADMIN_URL: the adapter formats it with the shop's domain.
        self.admin_url = f"{url}/{{shop}}/admin/api/{API_VERSION}/graphql.json"

    # --- control API ---------------------------------------------------------------------------
    def call(self, path: str, payload: dict | None = None, *, method: str = "POST") -> dict:
        data = None if method == "GET" else json.dumps(payload or {}).encode()
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise StandInError(json.loads(error.read()).get("error", str(error))) from None

    def health(self) -> bool:
        return self.call("/_standin/health", method="GET") == {"ok": True}

    def reset(self) -> None:
        self.call("/_standin/reset")

    def shop(self, domain: str, token: str, currency: str = "USD") -> dict:
        body = {"shop_domain": domain, "access_token": token, "currency": currency}
        return self.call("/_standin/shops", body)

    def configure(self, webhook_url: str | None = None, api_secret: str | None = None) -> dict:
        body: dict = {}
        if webhook_url is not None:
            body["webhook_url"] = webhook_url
        if api_secret is not None:
            body["api_secret"] = api_secret
        return self.call("/_standin/config", body)

    def clock(self, now: datetime | None = None, advance_days: float | None = None) -> str:
        """Move the stand-in's clock (to `now`, then by `advance_days`); returns its new now."""
        body: dict = {}
        if now is not None:
            body["now"] = now.isoformat()
        if advance_days is not None:
            body["advance_days"] = advance_days
        return self.call("/_standin/clock", body)["now"]

    def set_status(self, number: int, status: str) -> dict:
        return self.call(f"/_standin/subscriptions/{number}/status", {"status": status})

    def raise_cap(self, number: int, amount: Decimal | str) -> dict:
        """The merchant raises the cap in Shopify's own settings (no app request)."""
        return self.call(f"/_standin/subscriptions/{number}/cap", {"amount": str(amount)})

    def uninstall(self, domain: str) -> None:
        self.call(f"/_standin/shops/{domain}/uninstall")

    def fault(
        self,
        mode: str,
        count: int = 1,
        operation: str | None = None,
        seconds: float | None = None,
    ) -> None:
        body: dict = {"mode": mode, "count": count, "operation": operation}
        if seconds is not None:
            body["seconds"] = seconds
        self.call("/_standin/faults", body)

    def state(self) -> dict:
        return self.call("/_standin/state", method="GET")

    def subscription(self, number: int) -> dict:
        return next(s for s in self.state()["subscriptions"] if s["number"] == number)

    def webhooks_settled(self, seconds: float = 10) -> list[dict]:
        """The webhooks sent so far, once the stand-in has finished trying to deliver them."""
        deadline = time.monotonic() + seconds
        while True:
            state = self.state()
            if state["webhooks_idle"] or time.monotonic() > deadline:
                return state["webhooks"]
            time.sleep(0.05)

    # --- the merchant on the confirmation page -------------------------------------------------
    def page(self, confirmation_url: str) -> str:
        with urllib.request.urlopen(confirmation_url, timeout=10) as response:  # noqa: S310
            return response.read().decode()

    def approve(self, confirmation_url: str) -> str:
        """Press Approve; returns where Shopify sends the merchant (the app's returnUrl)."""
        return self._decide(confirmation_url, "approve")

    def decline(self, confirmation_url: str) -> str:
        return self._decide(confirmation_url, "decline")

    def _decide(self, confirmation_url: str, decision: str) -> str:
        page = self.page(confirmation_url)
        # The page's own form and button, as a browser would submit them.
        assert re.search(rf'name="decision" value="{decision}"', page), page
        body = urllib.parse.urlencode({"decision": decision}).encode()
        request = urllib.request.Request(confirmation_url, data=body, method="POST")
        try:
            _opener.open(request, timeout=10)
        except urllib.error.HTTPError as answer:
            if answer.code == 302:
                return answer.headers["Location"]
            text = answer.read().decode()
            raise StandInError(f"{decision} answered {answer.code}: {text}") from None
        raise StandInError(f"{decision} did not redirect back to the app")


def start(*, api_secret: str = API_SECRET) -> tuple[subprocess.Popen, StandIn]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "scripts" / "shopify_standin.py"),
            "--port",
            str(port),
            "--api-secret",
            api_secret,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stand_in = StandIn(f"http://127.0.0.1:{port}", api_secret=api_secret)
    for _ in range(100):
        try:
            if stand_in.health():
                return process, stand_in
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the Shopify stand-in did not start")

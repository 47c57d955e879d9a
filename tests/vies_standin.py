"""The VIES stand-in for tests: one server per test session (scripts/vies_standin.py), reset
between tests, with its controls (modes, the log of checks) as methods."""

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.stripe_standin import free_port

ROOT = Path(__file__).resolve().parent.parent


class ViesStandIn:
    def __init__(self, url: str):
        self.url = url

    def _call(self, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method="GET" if body is None else "POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return json.loads(response.read())

    def health(self) -> bool:
        return self._call("/health")["ok"]

    def reset(self) -> None:
        self._call("/_config/reset", {})

    def mode(self, mode: str, *, times: int | None = None) -> None:
        """ "normal", "ms_unavailable" (VIES's MS_UNAVAILABLE) or "down" (503), for the next
        `times` checks or until changed."""
        self._call("/_config/mode", {"mode": mode, "times": times})

    def checks(self) -> list[dict]:
        return self._call("/_config/checks")["checks"]

    @property
    def ecb_url(self) -> str:
        """Where the stand-in serves ECB's daily rates file (ECB_RATES_URL)."""
        return f"{self.url}/ecb/eurofxref-daily.xml"

    def ecb_serve(self, xml: str, *, status: int = 200) -> None:
        """Serve this text as ECB's daily file until the next reset (the packaged day
        otherwise)."""
        self._call("/_config/ecb", {"xml": xml, "status": status})


def start() -> tuple[subprocess.Popen, ViesStandIn]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "vies_standin.py"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stand_in = ViesStandIn(f"http://127.0.0.1:{port}")
    for _ in range(100):
        try:
            stand_in.health()
            return process, stand_in
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the VIES stand-in did not start")

"""A stand-in for the EU's VIES REST API, on loopback, for the demo and the tests.

Speaks the one call the portal makes (billing/vies_gateway.py):

    POST /check-vat-number
      {"countryCode": "DE", "vatNumber": "123456788",
       "requesterMemberStateCode": "FR", "requesterNumber": "11123456782"}   (requester optional)
    200 {"countryCode": "DE", "vatNumber": "123456788", "requestDate": "2026-12-06T10:00:00Z",
         "valid": true, "requestIdentifier": "WAPIAAAAX...", "name": "...", "address": "..."}
    (requestIdentifier only when a requester is named, as VIES does; name and address "---"
    for an id that is not valid)

and VIES's failures, as VIES reports them:

    200 {"actionSucceed": false, "errorWrappers": [{"error": "MS_UNAVAILABLE", "message": ...}]}
    503 (mode "down": the service itself unreachable behind its gateway)

Valid ids are those of REGISTERED below; any other id is answered `valid: false`. Controls, for
tests and the demo (never part of VIES):

    GET  /health                        200 {"ok": true}
    POST /_config/mode {"mode": "normal" | "ms_unavailable" | "down", "times": n}
         answer n checks (all of them without "times") in that mode, then normally again
    POST /_config/reset                 normal mode, the log of checks emptied
    GET  /_config/checks                the checks received so far (their JSON bodies)

It also stands in for the ECB's reference rates files (plans.ecb_gateway; one stand-in process
for the EU's two services, rather than one more port for the demo to start):

    GET  /ecb/eurofxref-daily.xml       the day's file, in ECB's format (application/xml)
    GET  /ecb/eurofxref-hist-90d.xml    the same format, every weekday of the last 90 days
    POST /_config/ecb {"xml": "...", "status": 200}
         serve this text (and status) at both instead, until reset

By default each day is the packaged plans/tax/ecb_rates.xml (ECB's real rates of 2024-06-28)
dated to a weekday on or before today (UTC, plus the demo's offset with --clock-file), as ECB
publishes a file each working day: a demo's invoice finds a recent rate. The dates are the
stand-in's, the rates that one day's.

    python scripts/vies_standin.py --port 8430
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import threading
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ECB_SEED = Path(__file__).resolve().parent.parent / "plans" / "tax" / "ecb_rates.xml"

# Made-up companies with ids whose check digits are right (python-stdnum accepts them).
REGISTERED = {
    "DE123456788": ("Beispiel Support GmbH", "Musterstrasse 1\n10115 Berlin"),
    "DE987654328": ("Kundendienst AG", "Hauptstrasse 5\n80331 Muenchen"),
    "FR11123456782": ("Helpdesk Billing SAS", "1 rue de l'Exemple\n75002 Paris"),
    "FR44732829320": ("Exemple Services SARL", "2 avenue Modele\n69002 Lyon"),
}


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counter = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        self.mode = "normal"
        self.times: int | None = None
        self.checks: list[dict[str, Any]] = []
        self.ecb: tuple[int, str] | None = None  # (status, text) set by a test

    def mode_for_next_check(self) -> str:
        with self.lock:
            mode = self.mode
            if self.times is not None:
                self.times -= 1
                if self.times <= 0:
                    self.mode, self.times = "normal", None
            return mode


STATE = State()
CLOCK_FILE: Path | None = None


def answer(body: dict[str, Any]) -> dict[str, Any]:
    """VIES's answer to one check (mode normal)."""
    country = str(body.get("countryCode", "")).upper()
    number = str(body.get("vatNumber", "")).upper()
    if len(country) != 2 or not number:
        return {"actionSucceed": False, "errorWrappers": [{"error": "INVALID_INPUT"}]}
    registered = REGISTERED.get(country + number)
    result: dict[str, Any] = {
        "countryCode": country,
        "vatNumber": number,
        "requestDate": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "valid": registered is not None,
        "name": registered[0] if registered else "---",
        "address": registered[1] if registered else "---",
    }
    if body.get("requesterNumber"):
        result["requestIdentifier"] = f"WAPIAAAA{next(STATE.counter):08d}"
    return result


_DAY = re.compile(r"(<Cube time='\d{4}-\d{2}-\d{2}'>.*?</Cube>)\s*(?=</Cube>)", re.S)


def ecb_file(today: date, *, days: int = 1) -> str:
    """The packaged day of ECB rates, once per weekday of the `days` days up to `today`,
    newest first (ECB's daily file is one day; its 90-day file the same shape, 90 days)."""
    text = ECB_SEED.read_text(encoding="utf-8")
    (cube,) = _DAY.findall(text)
    latest = today - timedelta(days=max(0, today.weekday() - 4))  # Friday's on a weekend
    span = (latest - timedelta(days=n) for n in range(days))
    weekdays = [day for day in span if day.weekday() < 5]
    dated = "\n".join(
        re.sub(r"time='[^']*'", f"time='{day.isoformat()}'", cube) for day in weekdays
    )
    return _DAY.sub(lambda _: dated, text)


def standin_today(clock_file: Path | None) -> date:
    """Today (UTC) as the stand-in's users see it: the demo's clock moves by its file's offset
    (seconds, as billing_portal.demo_clock writes it)."""
    offset = 0.0
    if clock_file is not None:
        try:
            offset = float(clock_file.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            offset = 0.0
    return (datetime.now(UTC) + timedelta(seconds=offset)).date()


class Handler(BaseHTTPRequestHandler):
    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def _send_xml(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path in ("/ecb/eurofxref-daily.xml", "/ecb/eurofxref-hist-90d.xml"):
            days = 1 if self.path.endswith("daily.xml") else 90
            today = standin_today(CLOCK_FILE)
            status, text = STATE.ecb or (200, ecb_file(today, days=days))
            self._send_xml(status, text)
        elif self.path == "/health":
            self._send(200, {"ok": True})
        elif self.path == "/_config/checks":
            self._send(200, {"checks": STATE.checks})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self._body()
        if self.path == "/_config/reset":
            STATE.reset()
            self._send(200, {"ok": True})
        elif self.path == "/_config/ecb":
            STATE.ecb = (int(body.get("status", 200)), str(body.get("xml", "")))
            self._send(200, {"ok": True})
        elif self.path == "/_config/mode":
            STATE.mode = str(body.get("mode", "normal"))
            STATE.times = body.get("times")
            self._send(200, {"ok": True})
        elif self.path.rstrip("/").endswith("/check-vat-number"):
            STATE.checks.append(body)
            mode = STATE.mode_for_next_check()
            if mode == "down":
                self._send(503, {"error": "Service Unavailable"})
            elif mode == "ms_unavailable":
                error = {"error": "MS_UNAVAILABLE", "message": "Member State unavailable"}
                self._send(200, {"actionSucceed": False, "errorWrappers": [error]})
            else:
                self._send(200, answer(body))
        else:
            self._send(404, {"error": "not found"})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass  # quiet: the tests start one per session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8430)
    parser.add_argument(
        "--clock-file", type=Path, help="The demo's clock offset (ECB's files are dated by it)."
    )
    args = parser.parse_args()
    global CLOCK_FILE
    CLOCK_FILE = args.clock_file
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()

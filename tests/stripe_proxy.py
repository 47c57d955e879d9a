"""A proxy between the portal and localstripe that behaves as Stripe does with idempotency keys,
and injects faults on request.

localstripe ignores `Idempotency-Key` (the same key twice creates two intents). Stripe instead
keeps each key for 24 hours: the same key with the same body answers the stored response
without doing anything again; the same key with another body is refused (400,
`idempotency_error`); a request arriving while the first one with its key is still running is
refused too (409, `idempotency_error`). Tests that re-send a charge see what production sees.

Faults, set by a test for the next matching requests (`fail_next`):
- `"lost"`: the request reaches the stand-in and succeeds there, but the answer is lost (the
  connection is closed without a response), as when a network drops after Stripe charged;
- `"reset"`: the connection is closed before the request is forwarded (nothing happened);
- an HTTP status (500, 503, 429): answered at once with Stripe's error shape, nothing forwarded
  (429 carries `Retry-After`, as Stripe's rate limiter does);
- `("hang", seconds)`: the answer is held that long before the request is forwarded;
- `("timeout", seconds)`: the request is forwarded and done, then the answer is held that long
  and the connection closed (the client gave up waiting: a timeout after Stripe acted).
Faults by chance: `chaos(seed=..., rates={503: 0.1, "lost": 0.05, ...})` draws one fault (or
none) for every matching request from a seeded generator, so a failing run can be replayed;
`injected` counts what was drawn. Stored keys expire after `KEY_TTL` seconds of `clock()`.
Every forwarded request may also be slowed by `delay` seconds, to widen race windows.
"""

import hashlib
import http.client
import json
import random
import threading
import time
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}
# Stripe keeps an idempotency key's first response this long.
KEY_TTL = 24 * 3600


class IdempotencyProxy:
    def __init__(self, upstream: str):
        target = urlsplit(upstream)
        self.upstream = (target.hostname, target.port)
        self.lock = threading.Lock()
        self.stored: dict[str, tuple[str, int, list, bytes, float]] = {}
        self.in_flight: set[str] = set()
        self.faults: deque[tuple[str, object]] = deque()
        self.forwarded: list[tuple[str, str]] = []  # (method, path) that reached the stand-in
        self.delay = 0.0
        # When keys were stored: perf_counter, which time_machine leaves alone (it moves
        # time.time and even time.monotonic), so a test's time travel never expires a key; a
        # test replaces it to move past KEY_TTL.
        self.clock = time.perf_counter
        self.random: random.Random | None = None
        self.rates: dict[object, float] = {}
        self.chaos_path = "/v1/payment_intents"
        self.injected: Counter = Counter()
        self.keys: list[tuple[str, str]] = []  # (path, Idempotency-Key) of every POST received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        with self.lock:
            self.stored.clear()
            self.in_flight.clear()
            self.faults.clear()
            self.forwarded.clear()
            self.delay = 0.0
            self.clock = time.perf_counter
            self.keys.clear()
            self.random, self.rates = None, {}
            self.injected.clear()

    def chaos(self, *, seed: int, rates: dict, path: str = "/v1/payment_intents") -> None:
        """From now on each POST under `path` meets a fault drawn with these probabilities
        (their sum at most 1; the rest pass through untouched)."""
        if sum(rates.values()) > 1:
            raise ValueError("fault rates add up to more than 1")
        with self.lock:
            self.random, self.rates, self.chaos_path = random.Random(seed), dict(rates), path

    def fail_next(self, fault, *, path: str = "/v1/payment_intents", times: int = 1) -> None:
        """The next `times` requests whose path starts with `path` meet `fault`."""
        with self.lock:
            self.faults.extend([(path, fault)] * times)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _take_fault(self, method: str, path: str):
        with self.lock:
            for i, (prefix, fault) in enumerate(self.faults):
                if method == "POST" and path.startswith(prefix):
                    del self.faults[i]
                    self.injected[fault if not isinstance(fault, tuple) else fault[0]] += 1
                    return fault
            if self.random is None or method != "POST" or not path.startswith(self.chaos_path):
                return None
            draw, cumulative = self.random.random(), 0.0
            for fault, rate in self.rates.items():
                cumulative += rate
                if draw < cumulative:
                    self.injected[fault if not isinstance(fault, tuple) else fault[0]] += 1
                    return fault
        return None

    def _forward(self, method, path, headers, body) -> tuple[int, list, bytes]:
        if self.delay:
            time.sleep(self.delay)
        connection = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_HEADERS]
            with self.lock:
                self.forwarded.append((method, path))
            return response.status, kept, payload
        finally:
            connection.close()

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _reply(self, status: int, headers: list, body: bytes) -> None:
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _error(self, status: int, kind: str, message: str, headers=()) -> None:
                body = json.dumps({"error": {"type": kind, "message": message}}).encode()
                self._reply(status, [("Content-Type", "application/json"), *headers], body)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                if self.command == "POST":
                    with proxy.lock:
                        proxy.keys.append((self.path, self.headers.get("Idempotency-Key", "")))
                fault = proxy._take_fault(self.command, self.path)
                if isinstance(fault, tuple) and fault[0] == "hang":
                    time.sleep(fault[1])
                if fault == "reset":
                    self.close_connection = True
                    return
                if fault == 429:
                    return self._error(
                        429, "rate_limit_error", "injected 429", headers=[("Retry-After", "1")]
                    )
                if isinstance(fault, int):
                    return self._error(fault, "api_error", f"injected {fault}")
                key = self.headers.get("Idempotency-Key") if self.command == "POST" else None
                fingerprint = hashlib.sha256(self.path.encode() + b"\n" + body).hexdigest()
                if key:
                    with proxy.lock:
                        stored = proxy.stored.get(key)
                        if stored is not None and proxy.clock() - stored[4] > KEY_TTL:
                            del proxy.stored[key]  # Stripe forgot it: a new request
                            stored = None
                        running = key in proxy.in_flight
                        if stored is None and not running:
                            proxy.in_flight.add(key)
                    if stored is not None:
                        if stored[0] != fingerprint:
                            return self._error(
                                400,
                                "idempotency_error",
                                "Keys for idempotent requests can only be used with the same "
                                "parameters they were first used with.",
                            )
                        return self._reply(*stored[1:4])
                    if running:
                        return self._error(
                            409,
                            "idempotency_error",
                            "There is currently another in-progress request using this "
                            "Idempotent Key.",
                        )
                try:
                    status, kept, payload = proxy._forward(self.command, self.path, headers, body)
                    if key and status < 500:
                        with proxy.lock:
                            proxy.stored[key] = (fingerprint, status, kept, payload, proxy.clock())
                finally:
                    if key:
                        with proxy.lock:
                            proxy.in_flight.discard(key)
                if isinstance(fault, tuple) and fault[0] == "timeout":
                    time.sleep(fault[1])  # Stripe did it; the client stopped waiting
                    fault = "lost"
                if fault == "lost":
                    self.close_connection = True  # Stripe did it; the answer never arrives
                    return
                self._reply(status, kept, payload)

            do_GET = do_POST = do_DELETE = _handle

        return Handler

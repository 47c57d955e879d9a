"""The HTTP side: Shopify's Admin GraphQL endpoint per shop, the confirmation pages, and the
control API, on the standard library's threading server. One lock around each request's work;
injected delays and dropped answers happen outside it so other requests go on meanwhile."""

import argparse
import hmac
import json
import re
import socket
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from graphql import GraphQLError, OperationDefinitionNode, graphql_sync, parse

from . import control, pages
from .resolvers import resolvers_attach
from .schema import schema_build
from .state import ControlError, PageError, Store
from .webhooks import Sender

GRAPHQL_PATH = r"/([^/]+)/admin/api/([^/]+)/graphql\.json"
CHARGE_PATH = r"/([^/]+)/admin/charges/(\d+)/(confirm|confirm_update)"
UNAUTHORIZED = "[API] Invalid API key or access token (unrecognized login or wrong password)"
INTERNAL_ERROR = "Internal error. Looks like something went wrong on our end."


def operation_fields(query: str, operation_name: str | None) -> set[str]:
    """The top-level fields a request asks for (what a fault's `operation` names)."""
    try:
        document = parse(query)
    except GraphQLError:
        return set()
    names: set[str] = {operation_name} if operation_name else set()
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            if operation_name and definition.name and definition.name.value != operation_name:
                continue
            names |= {
                selection.name.value
                for selection in definition.selection_set.selections
                if hasattr(selection, "name")
            }
    return names


class StandInServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        *,
        webhook_url: str,
        api_secret: str,
        clock_file: Path | None = None,
    ):
        super().__init__(address, Handler)
        host, port = self.server_address[:2]
        self.store = Store(
            base_url=f"http://{host}:{port}",
            default_webhook_url=webhook_url,
            default_api_secret=api_secret,
            clock_file=clock_file,
        )
        self.sender = Sender(generation=lambda: self.store.generation)
        self.store.emit = self._emit
        self.schema = resolvers_attach(schema_build())

    def _emit(self, topic: str, shop: str, payload: dict) -> None:
        self.sender.enqueue(
            topic=topic,
            shop=shop,
            payload=payload,
            url=self.store.webhook_url,
            secret=self.store.api_secret,
            at=self.store.now(),
        )


class Handler(BaseHTTPRequestHandler):
    server: StandInServer
    server_version = "ShopifyStandIn/1"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class' name
        pass  # tests read state, not logs; a quiet stand-in keeps the demo's output readable

    def do_GET(self) -> None:  # noqa: N802 - the base class' naming
        self.route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self.route("POST")

    def route(self, method: str) -> None:
        path = urllib.parse.urlsplit(self.path).path
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if path.startswith("/_standin/"):
            self.control(method, path, body)
        elif (match := _match(GRAPHQL_PATH, path)) and method == "POST":
            self.graphql(match[0], body)
        elif match := _match(CHARGE_PATH, path):
            self.charge_page(method, match[0], int(match[1]), match[2], body)
        else:
            self.send_json(404, {"errors": "Not Found"})

    # --- control API ---------------------------------------------------------------------------
    def control(self, method: str, path: str, raw: bytes) -> None:
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self.send_json(400, {"error": "the control API takes a JSON object"})
            return
        store = self.server.store
        try:
            with store.lock:
                store.tick()
                answer = control.handle(store, self.server.sender, method, path, body)
        except ControlError as error:
            self.send_json(error.status, {"error": error.message})
            return
        self.send_json(200, answer)

    # --- Admin GraphQL -------------------------------------------------------------------------
    def graphql(self, domain: str, raw: bytes) -> None:
        try:
            request = json.loads(raw)
            query = request["query"]
        except (ValueError, KeyError, TypeError):
            self.send_json(400, {"errors": "Bad Request: send JSON {query, variables}"})
            return
        variables = request.get("variables") or {}
        operation_name = request.get("operationName")
        store = self.server.store
        with store.lock:
            store.tick()
            shop = store.shops.get(domain)
            if shop is None:
                self.send_json(404, {"errors": store_missing(store, domain)})
                return
            token = self.headers.get("X-Shopify-Access-Token") or ""
            # An uninstalled app's token is revoked: Shopify answers 401 from then on.
            if not shop.installed or not hmac.compare_digest(token, shop.token):
                self.send_json(401, {"errors": UNAUTHORIZED})
                return
            fault = store.fault_take(operation_fields(query, operation_name))
            if fault and fault.mode == "error":
                self.send_json(
                    500,
                    {
                        "errors": [
                            {
                                "message": INTERNAL_ERROR,
                                "extensions": {"code": "INTERNAL_SERVER_ERROR"},
                            }
                        ]
                    },
                )
                return
            result = graphql_sync(
                self.server.schema,
                query,
                variable_values=variables,
                operation_name=operation_name,
                context_value={"store": store, "shop": shop},
            )
            answer = result.formatted
        if fault and fault.mode == "lose_answer":
            # The work is done; the caller never learns it: close without a status line.
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault and fault.mode == "timeout":
            time.sleep(fault.seconds)
        self.send_json(200, answer)

    # --- confirmation pages --------------------------------------------------------------------
    def charge_page(self, method: str, domain: str, number: int, kind: str, raw: bytes) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        signature = query.get("signature", [""])[0]
        decision = urllib.parse.parse_qs(raw.decode(errors="replace")).get("decision", [""])[0]
        store = self.server.store
        try:
            with store.lock:
                store.tick()
                shop = store.shops.get(domain)
                if shop is None or not shop.installed:
                    raise PageError(404, "Store not found", f"{domain} has not installed the app.")
                sub, line = store.page_subscription(
                    domain=domain,
                    number=number,
                    kind="update" if kind == "confirm_update" else "confirm",
                    signature=signature,
                )
                if kind == "confirm_update" and line is None:
                    raise PageError(404, "No usage cap", "This subscription has no usage charges.")
                if method == "GET":
                    if kind == "confirm":
                        self.send_html(200, pages.confirm_page(sub))
                    else:
                        self.send_html(200, pages.cap_page(sub, line))
                    return
                if decision not in ("approve", "decline"):
                    raise PageError(400, "Choose", "Press Approve or Decline.")
                if kind == "confirm":
                    (store.approve if decision == "approve" else store.decline)(sub)
                else:
                    (store.cap_approve if decision == "approve" else store.cap_decline)(sub, line)
                location = return_location(sub.return_url, sub.number)
        except PageError as error:
            self.send_html(error.status, pages.message_page(error.title, error.text))
            return
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    # --- answers -------------------------------------------------------------------------------
    def send_json(self, status: int, payload: object) -> None:
        self.send_body(status, json.dumps(payload).encode(), "application/json")

    def send_html(self, status: int, html: str) -> None:
        self.send_body(status, html.encode(), "text/html; charset=utf-8")

    def send_body(self, status: int, body: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout fault outlived it): nothing to tell anyone


def _match(pattern: str, path: str) -> tuple[str, ...] | None:
    found = re.fullmatch(pattern, path)
    return found.groups() if found else None


def store_missing(store: Store, domain: str) -> str:
    known = ", ".join(sorted(store.shops)) or "none yet"
    return (
        f"The Shopify stand-in has no shop {domain!r} (shops: {known}). Create it with "
        "POST /_standin/shops {shop_domain, access_token, currency}."
    )


def return_location(return_url: str, number: int) -> str:
    """The app's returnUrl with Shopify's charge_id added."""
    separator = "&" if urllib.parse.urlsplit(return_url).query else "?"
    return f"{return_url}{separator}charge_id={number}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="A stand-in for Shopify's Admin GraphQL billing API, for tests and the demo."
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--webhook-url", default="", help="Where webhooks go (one for all topics).")
    parser.add_argument("--api-secret", default="standin-api-secret", help="Signs webhooks.")
    parser.add_argument(
        "--clock-file", type=Path, help="The demo's clock file: its offset moves this clock too."
    )
    args = parser.parse_args(argv)
    try:
        server = StandInServer(
            (args.host, args.port),
            webhook_url=args.webhook_url,
            api_secret=args.api_secret,
            clock_file=args.clock_file,
        )
    except OSError as error:
        print(
            f"shopify_standin: cannot listen on {args.host}:{args.port} ({error.strerror}): "
            "the port is already in use or not allowed; choose another with --port.",
            file=sys.stderr,
        )
        sys.exit(2)
    base = server.store.base_url
    print(
        f"Shopify stand-in ready on {base} "
        f"(Admin API: {base}/{{shop}}/admin/api/2025-04/graphql.json)",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()

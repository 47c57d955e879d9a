"""Webhooks as Shopify sends them: JSON body signed with the app's API secret, POSTed from a
background thread (a GraphQL answer never waits for a delivery), in order, retried a few times."""

import base64
import hashlib
import hmac
import http.client
import json
import queue
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from datetime import datetime

API_VERSION = "2025-04"
# Pauses before the second, third and fourth attempts: short, this is a test double.
RETRY_PAUSES_SECONDS = (0.2, 0.5, 1.0)


def signature(body: bytes, secret: str) -> str:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class Sender:
    """Queues deliveries and sends them one after the other; keeps each one for /_standin/state."""

    def __init__(self, *, generation: Callable[[], int]):
        self.generation = generation
        self.queue: queue.Queue[dict] = queue.Queue()
        self.deliveries: list[dict] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._work, daemon=True, name="webhooks").start()

    def enqueue(
        self, *, topic: str, shop: str, payload: dict, url: str, secret: str, at: datetime
    ) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": signature(body, secret),
            "X-Shopify-Shop-Domain": shop,
            "X-Shopify-Webhook-Id": str(uuid.uuid4()),
            "X-Shopify-API-Version": API_VERSION,
            "X-Shopify-Triggered-At": at.isoformat(),
        }
        delivery = {
            "topic": topic,
            "shop": shop,
            "url": url,
            "headers": headers,
            "body": body.decode(),
            "payload": payload,
            "status": "queued" if url else "not sent: no webhook URL configured",
            "attempts": 0,
            "generation": self.generation(),
        }
        with self.lock:
            self.deliveries.append(delivery)
        if url:
            self.queue.put(delivery)

    def clear(self) -> None:
        with self.lock:
            self.deliveries = []

    def snapshot(self) -> list[dict]:
        with self.lock:
            return [
                {k: v for k, v in d.items() if k != "generation"}
                for d in self.deliveries
                if d["generation"] == self.generation()
            ]

    def idle(self) -> bool:
        with self.lock:
            return not any(d["status"] in ("queued", "sending") for d in self.deliveries)

    def _work(self) -> None:
        while True:
            delivery = self.queue.get()
            if delivery["generation"] != self.generation():
                delivery["status"] = "dropped: the stand-in was reset"
                continue
            delivery["status"] = "sending"
            for pause in (0.0, *RETRY_PAUSES_SECONDS):
                time.sleep(pause)
                delivery["attempts"] += 1
                outcome = self._post(delivery)
                delivery["last_outcome"] = outcome
                if outcome.startswith("2"):
                    delivery["status"] = "delivered"
                    break
            else:
                delivery["status"] = "failed"

    @staticmethod
    def _post(delivery: dict) -> str:
        # http.client rather than urllib: urllib rewrites header names ("X-shopify-topic"),
        # and the receiver should see them spelled as Shopify spells them.
        url = urllib.parse.urlsplit(delivery["url"])
        if url.scheme == "https":
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                url.netloc, timeout=10
            )
        else:
            connection = http.client.HTTPConnection(url.netloc, timeout=10)
        try:
            connection.request(
                "POST",
                url.path + (f"?{url.query}" if url.query else ""),
                body=delivery["body"].encode(),
                headers=delivery["headers"],
            )
            return str(connection.getresponse().status)
        except (OSError, http.client.HTTPException) as error:
            return f"unreachable: {error}"
        finally:
            connection.close()

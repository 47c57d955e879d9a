"""Signing of outbound webhooks, the scheme Stripe uses (pure; no Django import).

Header: `Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
Partners verify with `verify` (the same code is in docs/api.md for them to copy).
"""

import hashlib
import hmac
import time

HEADER = "Webhook-Signature"
TOLERANCE_SECONDS = 300


def sign(*, secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, body: bytes, header: str, tolerance: int = TOLERANCE_SECONDS) -> bool:
    """True if `header` signs `body` with `secret` within `tolerance` seconds of now."""
    fields = [part.split("=", 1) for part in header.split(",") if "=" in part]
    timestamps = [v for k, v in fields if k.strip() == "t"]
    signatures = [v.strip() for k, v in fields if k.strip() == "v1"]
    if len(timestamps) != 1 or not timestamps[0].strip().isdigit() or not signatures:
        return False
    timestamp = int(timestamps[0])
    if abs(time.time() - timestamp) > tolerance:
        return False
    signed = f"{timestamp}.".encode() + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, s) for s in signatures)

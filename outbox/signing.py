"""Signing of outbound webhooks, the scheme Stripe uses (pure; no Django import).

Header: `Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
Partners verify with `verify_webhook` from docs/api.md (tests run that very code against
what `sign` produces).
"""

import hashlib
import hmac

HEADER = "Webhook-Signature"


def sign(*, secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"

"""Secrets we must keep and use again (a Shopify shop's access token), encrypted at rest.

Fernet (AES-128-CBC with an HMAC, from `cryptography`): a leaked database or backup does not
leak the tokens. The key is FIELD_ENCRYPTION_KEY (a Fernet key, from the environment or a secret
store); without it, a key is derived from SECRET_KEY, which is enough for the demo and tests but
means rotating SECRET_KEY loses the tokens (docs/deploy.md says to set the key in production).
Several keys may be given, newest first: the first encrypts, any of them decrypts (rotation).
"""

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class SecretUnreadable(Exception):
    """A stored secret that none of the configured keys opens."""


def _derived_key() -> bytes:
    digest = hashlib.sha256(b"billing-portal field encryption:" + settings.SECRET_KEY.encode())
    return base64.urlsafe_b64encode(digest.digest())


def _fernet() -> MultiFernet:
    keys = [key for key in getattr(settings, "FIELD_ENCRYPTION_KEYS", []) if key]
    fernets = [Fernet(key) for key in keys] or [Fernet(_derived_key())]
    return MultiFernet(fernets)


def encrypt(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable(
            "A stored secret cannot be decrypted with FIELD_ENCRYPTION_KEYS: was the key changed?"
        ) from exc

"""API key format, generation and hashing (pure; no Django import).

A key reads `bpk_<8 prefix chars>_<32 secret chars>`. The prefix is stored in clear to find the
row and to show which key is which; the whole key is stored only as its SHA-256 digest. A slow
password hash is not needed: the key carries ~190 random bits, so the digest cannot be reversed
by guessing, and a fast hash keeps authentication cheap on the hot ingest path.
"""

import hashlib
import hmac
import secrets
import string

_ALPHABET = string.ascii_letters + string.digits
KEY_PREFIX = "bpk_"
_PREFIX_CHARS = 8
_SECRET_CHARS = 32


def _random(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def generate_key() -> tuple[str, str]:
    """Return (raw key, visible prefix) for a new key."""
    prefix = KEY_PREFIX + _random(_PREFIX_CHARS)
    return f"{prefix}_{_random(_SECRET_CHARS)}", prefix


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def prefix_of(raw: str) -> str | None:
    """The visible prefix of a well-formed key, or None for anything else."""
    head, sep, secret = raw.rpartition("_")
    if not sep or not head.startswith(KEY_PREFIX) or len(head) != len(KEY_PREFIX) + _PREFIX_CHARS:
        return None
    if len(secret) != _SECRET_CHARS or not secret.isalnum():
        return None
    return head


def matches(raw: str, key_hash: str) -> bool:
    # Constant-time comparison: the prefix is public, so the digest check must not leak timing.
    return hmac.compare_digest(hash_key(raw), key_hash)

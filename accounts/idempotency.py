"""`Idempotency-Key` for API POSTs: the same key and body replay the first response; another
body with the same key is a 409 (api.md, Conventions)."""

import functools
import hashlib
import json
import re

from django.db import IntegrityError, transaction
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from .errors import Conflict, DomainError
from .models import IdempotencyRecord
from .principals import KeyPrincipal

# Printable ASCII without spaces, as UUIDs and the usual random tokens are.
_KEY_FORMAT = re.compile(r"[!-~]{1,255}")


def _scope(request) -> str:
    """Keys are unique per reach, not per API key, so a retry sent with the rotated key
    still finds the first response."""
    key = request.user.key if isinstance(request.user, KeyPrincipal) else None
    if key is None:
        raise DomainError("Idempotency needs an API key.", code="unauthenticated")
    if key.account_id is not None:
        return f"account:{key.account_id}"
    return f"partner:{key.partner_id}"


def idempotent(view_method):
    """Decorate an APIView's `post`."""

    @functools.wraps(view_method)
    def wrapper(self, request, *args, **kwargs):
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return view_method(self, request, *args, **kwargs)
        # Sent empty is not absent: a client whose key went missing (an unset variable) would
        # otherwise lose the protection without a word.
        if not _KEY_FORMAT.fullmatch(key):
            raise DomainError(
                "Idempotency-Key is 1 to 255 printable ASCII characters without spaces "
                "(a UUID, say).",
                code="invalid_idempotency_key",
                details={"field": "Idempotency-Key"},
            )
        # The route is part of what is compared: one key sent to two invoices' retry (same
        # empty body) is a reuse, not a replay of the other invoice's answer.
        digest = hashlib.sha256(
            f"{request.method} {request.path}\n".encode() + request._request.body
        ).hexdigest()
        scope = _scope(request)
        record = _claim(scope, key, digest)
        if not isinstance(record, IdempotencyRecord):
            return record  # the first response, replayed
        try:
            response = view_method(self, request, *args, **kwargs)
        except Exception:
            record.delete()  # nothing was created: the same key may be used again
            raise
        if response.status_code >= 500:
            record.delete()
        else:
            record.status_code = response.status_code
            # Stored as rendered, so a replay is byte-for-byte what the first caller read.
            record.response_body = json.loads(JSONRenderer().render(response.data))
            record.save(update_fields=["status_code", "response_body"])
        return response

    return wrapper


# A claim can be released between our failed insert and our read (the first request failed
# and deleted it); a few more tries then let this request run in its place.
_CLAIM_TRIES = 3


def _claim(scope: str, key: str, digest: str) -> IdempotencyRecord | Response:
    """Our claim on the key, or the first request's stored response to replay.

    The claim commits at once (its own transaction), so concurrent requests with the key see it
    and get a 409 while it runs rather than waiting on an uncommitted row.
    """
    for _ in range(_CLAIM_TRIES):
        try:
            with transaction.atomic():
                return IdempotencyRecord.objects.create(scope=scope, key=key, request_hash=digest)
        except IntegrityError:
            record = IdempotencyRecord.objects.filter(scope=scope, key=key).first()
        if record is not None:
            return _replay(record, digest)
    # Claimed and released again each time: requests with this key are racing each other.
    raise _in_progress()


def _in_progress() -> Conflict:
    return Conflict(
        "A request with this Idempotency-Key is still being processed; send it again in a "
        "moment to get its response.",
        code="idempotency_key_in_progress",
    )


def _replay(record: IdempotencyRecord, digest: str) -> Response:
    if record.request_hash != digest:
        raise Conflict(
            "This Idempotency-Key was already used with a different body.",
            code="idempotency_key_reused",
        )
    if record.status_code is None:
        raise _in_progress()
    response = Response(record.response_body, status=record.status_code)
    response["Idempotent-Replayed"] = "true"
    return response

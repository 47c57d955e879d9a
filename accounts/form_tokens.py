"""Double clicks on the pages: a one-time token per rendered form, claimed once.

The page's counterpart of `idempotency.py`'s `Idempotency-Key` (the same IdempotencyRecord rows,
scoped per user). Here, below the screens, because both the billing pages and the operator
console protect their forms with it and neither may import the other.
"""

import uuid

from django.contrib import messages
from django.db import IntegrityError, transaction
from django.shortcuts import redirect

from .models import IdempotencyRecord

TOKEN_FIELD = "form_token"


def new_form_token() -> str:
    return uuid.uuid4().hex


def first_submission(request) -> bool:
    """True the first time a form's one-time token is posted; False for a double click or a
    re-post of the same form. The unique (scope, key) row decides, so two concurrent clicks
    cannot both pass."""
    token = request.POST.get(TOKEN_FIELD, "")
    if not token:
        return True  # forms without a token (none of ours) are not protected
    try:
        with transaction.atomic():
            IdempotencyRecord.objects.create(
                scope=f"page:user:{request.user.pk}", key=token[:255], request_hash=""
            )
    except IntegrityError:
        return False
    return True


def already_done(request, to: str):
    messages.info(request, "That form was already sent: nothing more was done.")
    return redirect(to)

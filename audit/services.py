"""Writing the audit log: `audit_record` from each service that changes a state, inside that
service's transaction, so a change and its row commit (or roll back) together.

Who acted comes from `acting_as`, set once at the edge (a console view, a merchant page, the
API) rather than threaded through every service signature: the services stay as they are and
each audit call stays one line. Without it the actor is the system."""

import contextlib
import contextvars
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from .bulk import copy_insert
from .models import AuditEntry, Source


@dataclass(frozen=True)
class Actor:
    source: str = Source.SYSTEM
    user_id: int | None = None
    label: str = ""


SYSTEM = Actor()
_actor: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("audit_actor", default=None)


@contextlib.contextmanager
def acting_as(*, source: str, user=None) -> Iterator[Actor]:
    """Within the block, audit rows name this actor."""
    actor = Actor(
        source=source,
        user_id=getattr(user, "pk", None),
        label=user.get_username() if user is not None else "",
    )
    token = _actor.set(actor)
    try:
        yield actor
    finally:
        _actor.reset(token)


def current_actor() -> Actor:
    return _actor.get() or SYSTEM


def audit_entry(
    *,
    action: str,
    obj: Any,
    before: Any = None,
    after: Any = None,
    reason: str = "",
    at: datetime | None = None,
    account_id: int | None = None,
    label: str | None = None,
) -> AuditEntry:
    """An unsaved row about `obj` (any model instance), for a bulk insert by the caller."""
    actor = current_actor()
    if account_id is None:
        account_id = getattr(obj, "account_id", None)
    return AuditEntry(
        at=at or timezone.now(),
        source=actor.source,
        actor_id=actor.user_id,
        actor=actor.label,
        action=action,
        object_type=obj._meta.model_name,
        object_id=obj.pk,
        # Never str(obj): some __str__ follow foreign keys, a query per row on the close path.
        object_label=(label if label is not None else getattr(obj, "number", "") or "")[:100],
        account_id=account_id,
        before=before,
        after=after,
        reason=reason,
    )


def audit_record(**fields) -> AuditEntry:
    """Append one row (see audit_entry for the fields)."""
    entry = audit_entry(**fields)
    entry.save(force_insert=True)
    return entry


def audit_record_many(entries: Iterable[AuditEntry]) -> None:
    """Append many rows in one COPY: the close path writes a batch's rows at once."""
    copy_insert(list(entries))


def acting_for_this_request(*, source: str, label: str) -> None:
    """Name the actor for the rest of the request. The API learns who acts only once DRF has
    checked the key, deep inside the view, where no `with` block can wrap the rest;
    `AuditRequestScope` restores the previous actor when the request ends."""
    _actor.set(Actor(source=source, label=label))

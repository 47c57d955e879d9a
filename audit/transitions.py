"""The shared part of every status state machine (invoices, subscriptions): lock the row, check
the move against the owner's table, write the owner's status-change row and one audit row, all
in one transaction. Each owner keeps its own table, history model and error."""

from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Any, TypeVar

from django.db import models, transaction

from .services import audit_record

M = TypeVar("M", bound=models.Model)


def status_transition(
    *,
    model: type[M],
    pk: Any,
    to: str,
    allowed: Mapping[str, Collection[str]],
    action: str,
    reason: str,
    at: datetime,
    refuse: Callable[[M], Exception],
    on_change: Callable[[M, str], object],
    same_is_noop: bool = False,
) -> tuple[M, bool]:
    """Move the row `pk` of `model` to status `to`. Returns the locked row and whether it moved.

    The row is locked before its status is read, so two callers racing to move it see each
    other's result instead of both moving it from the same status. A move the table does not
    allow raises `refuse(row)`; with `same_is_noop`, asking for the status it already has is
    not a move (returns False). `on_change(row, from_status)` runs after the new status is
    saved, in the same transaction: it writes the owner's status-change row and whatever else
    must commit with it (a partner webhook)."""
    with transaction.atomic():
        row = model._default_manager.select_for_update().get(pk=pk)
        before: str = row.status  # type: ignore[attr-defined]
        if same_is_noop and before == to:
            return row, False
        if to not in allowed[before]:
            raise refuse(row)
        audit_record(action=action, obj=row, before=before, after=to, reason=reason, at=at)
        row.status = to  # type: ignore[attr-defined]
        row.save(update_fields=["status"])
        on_change(row, before)
    return row, True

"""Loading dated tax rates into the versioned table (plans.models.TaxRateEntry): the write path
behind `manage.py tax_rates_load`; `plans.selectors.tax_rate_tables` is the read path.

Rates are versioned: a new rate is a new row from its date, and the rows already there stay as
they were, because invoices already issued were taxed at them. Loading a file twice changes
nothing. A file entry that would change a row (same place, same date, another rate or source)
is a correction of the past: refused unless the operator gives a reason, and then audited with
the row as it was and as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.errors import DomainError
from audit.services import audit_record

from .models import TaxRateEntry
from .selectors import tax_rate_tables_forget
from .tax.rate_file import RateFileEntry


@dataclass(frozen=True)
class TaxRatesLoaded:
    """What a load did, entry by entry (in the file's order)."""

    loaded: tuple[RateFileEntry, ...] = ()
    already_loaded: tuple[RateFileEntry, ...] = ()
    corrected: tuple[RateFileEntry, ...] = ()


class TaxRatesRefused(DomainError):
    """Nothing was loaded: each problem names its entry."""

    code = "tax_rates_refused"

    def __init__(self, problems: Sequence[str]):
        super().__init__("; ".join(problems), details={"problems": list(problems)})
        self.problems = tuple(problems)


def tax_rates_load(
    *, entries: Sequence[RateFileEntry], correction_reason: str = "", now: datetime | None = None
) -> TaxRatesLoaded:
    """Add the entries the table lacks, skip those it has; change a row only with a reason."""
    reason = correction_reason.strip()
    now = now or timezone.now()
    try:
        with transaction.atomic(durable=True):
            loaded = _load(entries=entries, reason=reason, now=now)
        tax_rate_tables_forget()  # this process issues at the new rates at once
        return loaded
    except IntegrityError as exc:
        # Two loads at once: the other one inserted a row of this file first. Run again and
        # this one finds it (skipped, or a change to refuse).
        raise TaxRatesRefused(
            ["another load added the same rates meanwhile: nothing was loaded, run it again"]
        ) from exc


def _load(*, entries: Sequence[RateFileEntry], reason: str, now: datetime) -> TaxRatesLoaded:
    keys = Q(pk__in=[])
    for entry in entries:
        keys |= Q(kind=entry.kind, code=entry.code, effective_from=entry.effective_from)
    # Locked so that a correction compares (and audits) the row as it is when it changes it.
    existing = {
        (row.kind, row.code, row.effective_from): row
        for row in TaxRateEntry.objects.select_for_update().filter(keys)
    }
    new, same, changed = [], [], []
    for entry in entries:
        row = existing.get((entry.kind, entry.code, entry.effective_from))
        if row is None:
            new.append(entry)
        elif _values(row) == _values(entry):
            same.append(entry)
        else:
            changed.append((entry, row))
    if changed and not reason:
        raise TaxRatesRefused(
            [
                f"{entry.where}: {entry.code} from {entry.effective_from.isoformat()} is already "
                f"loaded at {_plain_rate(row)} % ({row.source}); a new rate is a new dated entry, "
                "and a correction of this one takes --correct with the reason"
                for entry, row in changed
            ]
        )
    for entry in new:
        row = TaxRateEntry.objects.create(**_values(entry), **_key(entry), loaded_at=now)
        audit_record(action="tax_rate.load", obj=row, after=_audit(row), label=_label(row), at=now)
    for entry, row in changed:
        before = _audit(row)
        for field, value in _values(entry).items():
            setattr(row, field, value)
        row.loaded_at = now
        row.save(update_fields=[*_values(entry), "loaded_at"])
        audit_record(
            action="tax_rate.correct",
            obj=row,
            before=before,
            after=_audit(row),
            reason=reason,
            label=_label(row),
            at=now,
        )
    return TaxRatesLoaded(
        loaded=tuple(new),
        already_loaded=tuple(same),
        corrected=tuple(entry for entry, _ in changed),
    )


def _key(entry: RateFileEntry) -> dict[str, Any]:
    return {"kind": entry.kind, "code": entry.code, "effective_from": entry.effective_from}


def _values(item: RateFileEntry | TaxRateEntry) -> dict[str, Any]:
    # Decimal compares by value: 20 in a file is the 20.000 of the column.
    return {"rate": item.rate, "source": item.source, "note": item.note}


def _plain_rate(row: TaxRateEntry) -> str:
    return format(row.rate.normalize(), "f")


def _audit(row: TaxRateEntry) -> dict[str, str]:
    return {
        "kind": row.kind,
        "code": row.code,
        "effective_from": row.effective_from.isoformat(),
        "rate": _plain_rate(row),
        "source": row.source,
        "note": row.note,
    }


def _label(row: TaxRateEntry) -> str:
    return f"{row.code} from {row.effective_from.isoformat()}"

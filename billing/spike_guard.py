"""The spike guard's clock and people's decisions (docs/rules-engine.md, "Held units").

- `anomalies_check`, hourly and before each billing run: each account's billable units per
  meter today against the same weekdays (metering.guard.anomaly); an anomalous day in or
  heading into overage opens a `UsageAnomaly` and holds its units over the usual volume
  (the latest ones), so the next close does not bill them. "Alert only" accounts are told and
  billed.
- `loops_notify`: the loop detector holds tickets at ingest (metering.holds); the merchant gets
  one email per batch of newly held tickets, partners `usage.anomaly_detected`.
- `holds_release_due`: a hold nobody decided on is released after 14 days.
- `anomaly_release`, `anomaly_exclude`, `holds_release`, `holds_exclude`: the merchant's or an
  operator's decision. Released units count again (late usage on the next invoice, saying so,
  when their period was closed); excluded ones become accepted ticket disputes, with their
  money rules (billing.ticket_disputes).
"""

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from accounts.errors import Conflict, DomainError
from accounts.models import Account
from audit.services import audit_record, current_actor
from metering import event_store, guard
from metering import services as metering
from metering.holds import HOLD_DAYS, guard_settings, holds_create, holds_resolve
from metering.models import (
    AnomalyStatus,
    Charge,
    ChargeStatus,
    SpikeGuard,
    SpikeGuardMode,
    SubjectKind,
    UsageAnomaly,
    UsageDay,
    UsageHold,
)
from outbox import services as outbox
from plans import periods
from plans.meters import meter_label
from plans.models import Subscription
from plans.terms import meter_terms_by_meter, subscription_terms

from . import notifications, ticket_disputes

# Units that count as the day's usage: billed, waiting for their window, or held already.
_VOLUME = (ChargeStatus.FINAL, ChargeStatus.PENDING, ChargeStatus.HELD)


def spike_guard_tick(*, as_of: datetime | None = None) -> dict[str, int]:
    """What the hourly beat runs (and each billing run, before it closes periods)."""
    as_of = as_of or timezone.now()
    return {
        "anomalies": len(anomalies_check(as_of=as_of)),
        "loops_told": loops_notify(at=as_of),
        "released": holds_release_due(at=as_of),
    }


# --- the account's settings ----------------------------------------------------------------

# Each setting's bounds, inclusive (the page's form, the API and this service say the same).
SETTING_BOUNDS: dict[str, tuple[int, int]] = {
    "loop_tickets": (2, 1000),
    "loop_minutes": (5, 1440),
    "anomaly_multiplier": (2, 20),
    "anomaly_margin": (10, 100_000),
}
SETTING_FIELDS = ("mode", *SETTING_BOUNDS)


def spike_guard_settings(*, account: Account) -> SpikeGuard:
    """The account's settings: its own row, or the defaults (unsaved)."""
    return guard_settings([account.pk])[account.pk]


def spike_guard_settings_save(*, account: Account, **fields) -> SpikeGuard:
    """Change some of the account's spike-guard settings (the others keep their value); a
    value out of bounds is refused naming its field. They apply from the next check on."""
    unknown = sorted(set(fields) - set(SETTING_FIELDS))
    if unknown:
        raise DomainError(f"Unknown setting '{unknown[0]}'.", details={"field": unknown[0]})
    if "mode" in fields and fields["mode"] not in SpikeGuardMode.values:
        raise DomainError(
            "mode is 'hold' or 'alert_only'.", code="invalid_setting", details={"field": "mode"}
        )
    for field, (low, high) in SETTING_BOUNDS.items():
        value = fields.get(field)
        if value is None and field in fields:
            raise DomainError(f"{field} needs a value.", details={"field": field})
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high
        ):
            raise DomainError(
                f"{field} is a whole number from {low:,} to {high:,}.",
                code="invalid_setting",
                details={"field": field},
            )
    with transaction.atomic():
        # Lock the row when there is one; a first save creates it (two first saves at once: the
        # loser's create fails on the primary key and retries as an update).
        current = SpikeGuard.objects.select_for_update().filter(account=account).first()
        if current is None:
            try:
                with transaction.atomic():
                    current = SpikeGuard.objects.create(account=account)
            except IntegrityError:
                current = SpikeGuard.objects.select_for_update().get(account=account)
        before = {f: getattr(current, f) for f in SETTING_FIELDS}
        for field, value in fields.items():
            setattr(current, field, value)
        after = {f: getattr(current, f) for f in SETTING_FIELDS}
        if after == before:
            return current
        current.save()
        changed = [f for f in SETTING_FIELDS if before[f] != after[f]]
        audit_record(
            action="spike_guard.settings_changed",
            obj=current,
            before={f: before[f] for f in changed},
            after={f: after[f] for f in changed},
            account_id=account.pk,
            label=account.slug,
        )
    return current


# --- the daily anomaly check ----------------------------------------------------------------


def anomalies_check(*, as_of: datetime, account_ids: list[int] | None = None) -> list[UsageAnomaly]:
    """Open (or widen) the anomalies of today and yesterday (a spike late in the evening is
    still caught by the first run after midnight, before that run closes the period); returns
    those opened or widened now.

    Runs hourly over every account, and before each close: two light queries when nothing is
    unusual. The first finds the (account, meter, day) whose units could be an anomaly at all
    (more than the smallest margin an account may set: a day is one only above baseline + c);
    only those read their history and their subscription."""
    today = as_of.astimezone(UTC).date()
    targets = (today, today - timedelta(days=1))
    live = Subscription.objects.filter(ended_at__isnull=True)
    if account_ids is not None:
        live = live.filter(account_id__in=account_ids)
    busy = set(busy_meters(live, targets))
    if not busy:
        return []
    accounts = {a for a, _ in busy}
    subscriptions = {
        s.account_id: s for s in live.filter(account_id__in=accounts).select_related("account")
    }
    days = {t - timedelta(weeks=k) for t in targets for k in range(guard.MAX_WEEKS + 1)}
    rows = (
        UsageDay.objects.filter(account_id__in=accounts, day__in=sorted(days), status__in=_VOLUME)
        .values_list("account_id", "meter", "day")
        .annotate(units=Sum("units"))
    )
    volume: dict[tuple[int, str], dict[date, int]] = defaultdict(dict)
    for account_id, meter, day, units in rows:
        if (account_id, meter) in busy:
            volume[(account_id, meter)][day] = units
    settings = guard_settings(accounts)
    changed = []
    for (account_id, meter), by_day in sorted(volume.items()):
        subscription = subscriptions[account_id]
        started = subscription.started_at.astimezone(UTC).date()
        rule = settings[account_id]
        for target in targets:
            observed = by_day.get(target, 0)
            if not observed:
                continue
            # Weeks before the subscription are no history; a week without usage is a 0.
            weeks = [target - timedelta(weeks=k) for k in range(1, guard.MAX_WEEKS + 1)]
            history = [by_day.get(d, 0) for d in weeks if d >= started]
            found = guard.anomaly(
                observed=observed,
                same_weekdays=history,
                multiplier=rule.anomaly_multiplier,
                margin=rule.anomaly_margin,
            )
            if found is None or not _heading_into_overage(subscription, meter, as_of):
                continue
            anomaly = _anomaly_open(subscription.account, meter, target, found, rule.mode, as_of)
            if anomaly is not None:
                changed.append(anomaly)
    return changed


def busy_meters(live, targets: tuple[date, ...]):
    """The (account, meter) of `live` subscriptions with more units on one of `targets` than
    the smallest margin any account may set. Read by the counters' day index
    (`usageday_day_idx`): two days out of every day kept."""
    # A day belongs to a usage period that began at most a month before it.
    recent = datetime.combine(max(targets) - timedelta(days=32), time.min, tzinfo=UTC)
    return (
        UsageDay.objects.filter(
            account_id__in=live.values("account_id"),
            period_start__gte=recent,
            day__in=targets,
            status__in=_VOLUME,
        )
        .values_list("account_id", "meter", "day")
        .annotate(units=Sum("units"))
        .filter(units__gt=SETTING_BOUNDS["anomaly_margin"][0])
        .values_list("account_id", "meter")
    )


def _heading_into_overage(subscription: Subscription, meter: str, as_of: datetime) -> bool:
    start, end = periods.usage_period_containing(
        subscription.billing_anchor, as_of, subscription.interval
    )
    terms = meter_terms_by_meter(subscription_terms(subscription)).get(meter)
    counted = (
        UsageDay.objects.filter(
            account_id=subscription.account_id,
            period_start=start,
            meter=meter,
            status__in=_VOLUME,
        ).aggregate(n=Sum("units"))["n"]
        or 0
    )
    elapsed = (as_of - start) / (end - start)
    return guard.heading_into_overage(
        counted=counted, included=terms.included if terms else None, elapsed=elapsed
    )


def _anomaly_open(account, meter, today, found: guard.Anomaly, mode, at) -> UsageAnomaly | None:
    alert_only = mode == SpikeGuardMode.ALERT_ONLY
    with transaction.atomic():
        try:
            with transaction.atomic():
                anomaly = UsageAnomaly.objects.create(
                    account=account,
                    meter=meter,
                    day=today,
                    observed=found.observed,
                    baseline=found.baseline,
                    spread=found.spread,
                    weeks=found.weeks,
                    status=AnomalyStatus.ALERTED if alert_only else AnomalyStatus.OPEN,
                    opened_at=at,
                )
            new = True
        except IntegrityError:  # opened earlier today: widen it while it is open
            anomaly = UsageAnomaly.objects.select_for_update().get(
                account=account, meter=meter, day=today
            )
            if anomaly.status != AnomalyStatus.OPEN or anomaly.observed == found.observed:
                return None
            anomaly.observed = found.observed
            new = False
        if anomaly.status == AnomalyStatus.OPEN:
            anomaly.held = _hold_excess(anomaly, at)
        anomaly.save()
        if new:
            audit_record(
                action="usage.anomaly_opened",
                obj=anomaly,
                after={
                    "meter": meter,
                    "day": today.isoformat(),
                    "observed": anomaly.observed,
                    "baseline": anomaly.baseline,
                    "held": anomaly.held,
                    "status": anomaly.status,
                },
                reason=anomaly_words(anomaly),
                at=at,
                label=f"{meter} {today.isoformat()}",
            )
            outbox.outbox_emit(
                account_id=account.pk, type="usage.anomaly_detected", data=_anomaly_data(anomaly)
            )
            notifications.send(
                "usage_anomaly",
                account,
                also=notifications.billing_managers(account),
                anomaly=anomaly,
                words=anomaly_words(anomaly),
                meter_label=meter_label(meter),
                held_days=HOLD_DAYS.days,
            )
    return anomaly


def _hold_excess(anomaly: UsageAnomaly, at: datetime) -> int:
    """Hold the day's units over the baseline, the latest first to go: the first `baseline`
    units of the day (in the order they became billable) are the usual volume."""
    start = datetime.combine(anomaly.day, time.min, tzinfo=UTC)
    units = list(
        Charge.objects.filter(
            account_id=anomaly.account_id,
            meter=anomaly.meter,
            billable_at__gte=start,
            billable_at__lt=start + timedelta(days=1),
            status__in=_VOLUME,
        )
        .order_by("billable_at", "subject", "unit")
        .values_list("subject_kind", "subject", "status")
    )
    over = units[anomaly.baseline :]
    reason = (
        f"Usage spike: {anomaly.observed:,} {meter_label(anomaly.meter).lower()} on "
        f"{anomaly.day:%a %-d %b} against a usual {anomaly.baseline:,}; held for review."
    )
    wanted = {
        (anomaly.account_id, kind, subject): reason
        for kind, subject, status in over
        if status != ChargeStatus.HELD
    }
    if wanted:
        held = holds_create(
            wanted, at=at, meter=anomaly.meter, kind=UsageHold.Kind.ANOMALY, anomaly=anomaly
        )
        subjects = sorted(held)
        event_store.mark_for_reevaluation(subjects, now=at)
        metering.reevaluate(subjects=subjects, as_of=at)
    return UsageHold.objects.filter(
        anomaly=anomaly, released_at__isnull=True, excluded_at__isnull=True
    ).count()


def anomaly_words(anomaly: UsageAnomaly) -> str:
    label = meter_label(anomaly.meter).lower()
    said = (
        f"{anomaly.observed:,} {label} on {anomaly.day:%A %-d %B}, against a usual "
        f"{anomaly.baseline:,} on {anomaly.day:%A}s (the last {anomaly.weeks} weeks)"
    )
    if anomaly.status == AnomalyStatus.ALERTED:
        return f"{said}. Your settings say alert only: they are billed."
    return f"{said}. The {anomaly.held:,} over the usual are held for review, not billed."


def _anomaly_data(anomaly: UsageAnomaly) -> dict:
    return {
        "kind": "spike",
        "id": anomaly.pk,
        "meter": anomaly.meter,
        "day": anomaly.day.isoformat(),
        "observed": anomaly.observed,
        "baseline": anomaly.baseline,
        "held": anomaly.held,
        "status": anomaly.status,
        "resolved_by": anomaly.resolved_by or None,
    }


# --- loops, told ----------------------------------------------------------------------------


def loops_notify(*, at: datetime) -> int:
    """One email per account for the loop holds made since the last time, and one
    `usage.anomaly_detected` (kind `loop`). Returns the accounts told."""
    waiting: dict[int, list[UsageHold]] = defaultdict(list)
    for hold in UsageHold.objects.filter(
        kind=UsageHold.Kind.LOOP, notified_at__isnull=True, released_at__isnull=True
    ).order_by("account_id", "held_at"):
        waiting[hold.account_id].append(hold)
    accounts = Account.objects.in_bulk(list(waiting))
    for account_id, held in waiting.items():
        account = accounts[account_id]
        with transaction.atomic():
            claimed = UsageHold.objects.filter(
                pk__in=[h.pk for h in held], notified_at__isnull=True
            ).update(notified_at=at)
            if not claimed:
                continue  # another run told them
            reasons = sorted({h.reason for h in held})
            outbox.outbox_emit(
                account_id=account_id,
                type="usage.anomaly_detected",
                data={
                    "kind": "loop",
                    "held": len(held),
                    "tickets": [h.subject for h in held[:100]],
                    "reasons": reasons,
                },
            )
            notifications.send(
                "usage_loop_held",
                account,
                also=notifications.billing_managers(account),
                held=len(held),
                tickets=[h.subject for h in held[:20]],
                reasons=reasons,
                held_days=HOLD_DAYS.days,
            )
    return len(waiting)


# --- decisions ------------------------------------------------------------------------------


def holds_release_due(*, at: datetime) -> int:
    """Release the holds nobody decided on within HOLD_DAYS; their anomalies with them."""
    due = list(
        UsageHold.objects.filter(
            release_after__lte=at, released_at__isnull=True, excluded_at__isnull=True
        )
    )
    if not due:
        return 0
    released = holds_release(holds=due, at=at, by="automatically after 14 days")
    return len(released)


def holds_release(*, holds: list[UsageHold], at: datetime | None = None, by: str = "") -> list:
    """Release held units: they count again, on the next invoice when their period closed."""
    at = at or timezone.now()
    by = by or _actor_label()
    with transaction.atomic():
        released = metering.holds_release(held=holds, by=by, at=at)
        for hold in released:
            audit_record(
                action="usage.hold_released",
                obj=hold,
                after={"subject": hold.subject, "meter": hold.meter or "all"},
                reason=hold.reason,
                at=at,
                account_id=hold.account_id,
                label=f"{hold.subject_kind} {hold.subject}",
            )
        _anomalies_settle({h.anomaly_id for h in released if h.anomaly_id}, at, by)
    return released


def holds_exclude(
    *, holds: list[UsageHold], comment: str = "", at: datetime | None = None, by: str = ""
) -> list:
    """Exclude held units for good: each held ticket becomes an accepted ticket dispute (with
    its money rules; held units were never billed, so usually none), other subjects an
    exclusion."""
    at = at or timezone.now()
    by = by or _actor_label()
    with transaction.atomic():
        excluded = holds_resolve(holds=holds, how="excluded", by=by, at=at)
        by_account: dict[int, list[UsageHold]] = defaultdict(list)
        for hold in excluded:
            by_account[hold.account_id].append(hold)
        for account_id, rows in by_account.items():
            account = Account.objects.get(pk=account_id)
            for hold in rows:
                reason = (
                    ticket_disputes.TicketDisputeReason.AUTO_REPLY_LOOP
                    if hold.kind == UsageHold.Kind.LOOP
                    else ticket_disputes.TicketDisputeReason.OTHER
                )
                words = comment or f"{hold.get_kind_display().capitalize()}: {hold.reason}"
                if hold.subject_kind == SubjectKind.TICKET:
                    ticket_disputes.ticket_dispute_from_hold(
                        account=account, ticket=hold.subject, reason=reason, comment=words, at=at
                    )
                else:
                    metering.tickets_exclude(
                        account_id=account_id,
                        tickets=[hold.subject],
                        reason=words,
                        at=at,
                        kind=hold.subject_kind,
                    )
                audit_record(
                    action="usage.hold_excluded",
                    obj=hold,
                    after={"subject": hold.subject, "meter": hold.meter or "all"},
                    reason=words,
                    at=at,
                    account_id=account_id,
                    label=f"{hold.subject_kind} {hold.subject}",
                )
        _anomalies_settle({h.anomaly_id for h in excluded if h.anomaly_id}, at, by)
    return excluded


def anomaly_release(*, anomaly: UsageAnomaly, at: datetime | None = None) -> UsageAnomaly:
    return _anomaly_decide(anomaly, holds_release, at)


def anomaly_exclude(*, anomaly: UsageAnomaly, at: datetime | None = None) -> UsageAnomaly:
    return _anomaly_decide(anomaly, holds_exclude, at)


def _anomaly_decide(anomaly: UsageAnomaly, decide, at: datetime | None) -> UsageAnomaly:
    at = at or timezone.now()
    with transaction.atomic():
        anomaly = UsageAnomaly.objects.select_for_update().get(pk=anomaly.pk)
        if anomaly.status != AnomalyStatus.OPEN:
            raise Conflict(
                f"This spike was {anomaly.get_status_display().lower()} already.", code="decided"
            )
        decide(holds=list(anomaly.holds.all()), at=at, by=_actor_label())
        anomaly.refresh_from_db()
        if anomaly.status == AnomalyStatus.OPEN:  # no active hold was left to decide
            anomaly.status = (
                AnomalyStatus.RELEASED if decide is holds_release else AnomalyStatus.EXCLUDED
            )
            anomaly.resolved_at, anomaly.resolved_by = at, _actor_label()
            anomaly.save()
            _anomaly_resolved(anomaly, at)
    return anomaly


def _anomalies_settle(anomaly_ids: set[int], at: datetime, by: str) -> None:
    """An anomaly with no active hold left is resolved: released when any of its holds was,
    excluded when all were excluded."""
    for anomaly in UsageAnomaly.objects.select_for_update().filter(
        pk__in=anomaly_ids, status=AnomalyStatus.OPEN
    ):
        holds = list(anomaly.holds.all())
        if any(h.is_active for h in holds):
            continue
        released = any(h.released_at for h in holds)
        anomaly.status = AnomalyStatus.RELEASED if released else AnomalyStatus.EXCLUDED
        anomaly.held = 0
        anomaly.resolved_at, anomaly.resolved_by = at, by
        anomaly.save()
        _anomaly_resolved(anomaly, at)


def _anomaly_resolved(anomaly: UsageAnomaly, at: datetime) -> None:
    audit_record(
        action=f"usage.anomaly_{anomaly.status}",
        obj=anomaly,
        before={"status": AnomalyStatus.OPEN},
        after={"status": anomaly.status},
        reason=anomaly.resolved_by,
        at=at,
        label=f"{anomaly.meter} {anomaly.day.isoformat()}",
    )
    outbox.outbox_emit(
        account_id=anomaly.account_id, type="usage.anomaly_resolved", data=_anomaly_data(anomaly)
    )


def _actor_label() -> str:
    actor = current_actor()
    return actor.label or actor.source

"""Account-level limits on counted units: Convert's hard cap (C2) and the AI pause (Z9).

The rules engine decides per subject; a cap is a property of an account and a period, so it
is re-applied over all of the period's counted units, ordered by when they became billable.
A late click stamped earlier than others therefore takes its place in the order: arrival
order never decides who is billed.

Re-evaluation calls `apply_limits` once per batch, so everything here is batched: one query
for the counts, one for the entitlements, and row loads only for periods actually over a cap.
"""

from datetime import datetime

from django.db import connection, transaction
from django.db.models import Count, Q

from audit.services import audit_entry, audit_record, audit_record_many
from outbox import services as outbox
from plans import periods, pricing
from plans.models import Subscription
from plans.terms import allocation_term, included_on_meter, subscription_terms

from .event_store import ARRAY_OF, statement_run
from .models import Charge, ChargeStatus, Entitlement, Feature
from .rules import types as t

_COUNTED = [ChargeStatus.FINAL, ChargeStatus.PENDING, ChargeStatus.CAPPED]


class _Entitlements:
    """The batch's entitlement rows, read once; a write happens only when a state changes."""

    def __init__(self, account_ids: set[int]):
        self.rows = {
            (row.account_id, row.feature): row
            for row in Entitlement.objects.filter(account_id__in=account_ids)
        }

    def set(
        self, account_id: int, feature: str, *, paused_until: datetime | None, reason: str = ""
    ) -> None:
        state = Entitlement.State.PAUSED if paused_until else Entitlement.State.ACTIVE
        current = self.rows.get((account_id, feature))
        if current is None and not paused_until:
            return  # no row reads as active
        if current is not None and (current.state, current.until) == (state, paused_until):
            return
        row, _ = Entitlement.objects.update_or_create(
            account_id=account_id,
            feature=feature,
            defaults={"state": state, "until": paused_until, "reason": reason},
        )
        outbox.entitlement_changed_emit(
            account_id=account_id, feature=feature, state=state, until=paused_until
        )
        audit_record(
            action="entitlement.state",
            obj=row,
            label=feature,
            before=current.state if current else "active",
            after=state,
            reason=reason,
        )
        self.rows[(account_id, feature)] = row


def apply_limits(*, touched: set[tuple[int, str, datetime]], as_of: datetime) -> None:
    """Re-apply caps to the (account, meter, period) triples that gained or lost units."""
    convert = {(a, p) for a, meter, p in touched if meter == t.CONVERT_CLICKS}
    resolutions = {(a, p) for a, meter, p in touched if meter == t.AUTOMATED_RESOLUTIONS}
    accounts = {a for a, _ in convert | resolutions}
    if not accounts:
        return
    subscriptions = {
        s.account_id: s
        for s in Subscription.objects.filter(
            account_id__in=accounts, ended_at__isnull=True
        ).select_related("account", "plan", "edition")
    }
    entitlements = _Entitlements(accounts)
    if convert:
        limits = included_on_meter(
            subscriptions=list(subscriptions.values()), meter=t.CONVERT_CLICKS
        )
        counts = _convert_counts(convert)
        for account_id, period_start in sorted(convert):
            subscription = subscriptions.get(account_id)
            convert_cap(
                account_id=account_id,
                limit=limits.get(subscription.pk, 0) if subscription else 0,
                anchor=subscription.billing_anchor if subscription else period_start,
                interval=subscription.interval if subscription else periods.MONTH,
                period_start=period_start,
                counts=counts.get((account_id, period_start), (0, 0)),
                as_of=as_of,
                entitlements=entitlements,
            )
    limited = {
        (a, p) for a, p in resolutions if a in subscriptions and _has_ai_limit(subscriptions[a])
    }
    _release_unlimited({a for a, _ in resolutions - limited} & set(subscriptions), entitlements)
    for account_id, period_start in sorted(limited):
        resolutions_limit(
            subscription=subscriptions[account_id],
            period_start=period_start,
            as_of=as_of,
            entitlements=entitlements,
        )


def limits_reapply(*, subscription: Subscription, as_of: datetime) -> None:
    """Re-apply the caps of the current usage period after the terms changed: a higher
    Convert tier lifts the C2 pause at once, a higher AI limit the Z9 one, without waiting
    for the next click or resolution to arrive."""
    start, _ = periods.usage_period_containing(
        subscription.billing_anchor, as_of, subscription.interval
    )
    apply_limits(
        touched={
            (subscription.account_id, t.CONVERT_CLICKS, start),
            (subscription.account_id, t.AUTOMATED_RESOLUTIONS, start),
        },
        as_of=as_of,
    )


def _has_ai_limit(subscription: Subscription) -> bool:
    pauses = subscription.edition_id and subscription.ai_at_limit == Subscription.AtLimit.PAUSE
    return bool(pauses) or subscription.ai_monthly_limit is not None


def _release_unlimited(account_ids: set[int], entitlements: _Entitlements) -> None:
    """Accounts without an AI limit (the common case): nothing is capped, and a limit lifted
    since releases what it capped. One UPDATE for all of them."""
    if not account_ids:
        return
    Charge.objects.filter(
        account_id__in=account_ids, meter=t.AUTOMATED_RESOLUTIONS, status=ChargeStatus.CAPPED
    ).update(status=ChargeStatus.FINAL)
    for account_id in account_ids:
        entitlements.set(account_id, Feature.AI_AGENTS, paused_until=None)


def _convert_counts(
    pairs: set[tuple[int, datetime]],
) -> dict[tuple[int, datetime], tuple[int, int]]:
    """(counted, capped) Convert clicks per (account, period). On PostgreSQL from the per-day
    counters (UsageDay): the triggers that keep them run in the statement that writes the
    charge rows, so they count this transaction's rows too, and a period's clicks are read as
    a few rows a day instead of one a click (the count grew with the month, and its query
    was built per batch as an OR of every pair)."""
    if connection.vendor == "postgresql":
        counted = [str(status) for status in _COUNTED]
        accounts, starts = zip(*sorted(pairs), strict=True)
        rows = statement_run(
            "SELECT d.account_id, d.period_start, "
            "coalesce(sum(d.units) FILTER (WHERE d.status = ANY(%s::text[])), 0), "
            "coalesce(sum(d.units) FILTER (WHERE d.status = %s), 0) "
            "FROM unnest(%s::bigint[], %s::timestamptz[]) AS w(account_id, period_start) "
            "JOIN metering_usageday d ON d.account_id = w.account_id "
            "AND d.period_start = w.period_start AND d.meter = %s GROUP BY 1, 2",
            [
                ARRAY_OF["text"](counted),
                ChargeStatus.CAPPED.value,
                ARRAY_OF["int8"](accounts),
                ARRAY_OF["timestamptz"](starts),
                t.CONVERT_CLICKS,
            ],
        )
    else:  # the SQLite demo counts charges: its counters' triggers keep times as text that a
        # datetime parameter does not match
        condition = Q()
        for account_id, period_start in pairs:
            condition |= Q(account_id=account_id, period_start=period_start)
        rows = list(
            Charge.objects.filter(condition, meter=t.CONVERT_CLICKS, status__in=_COUNTED)
            .values_list("account_id", "period_start")
            .annotate(n=Count("id"), capped=Count("id", filter=Q(status=ChargeStatus.CAPPED)))
        )
    return {(a, p): (n, capped) for a, p, n, capped in rows}


def _cap_rows(rows: list[Charge], billed: set[int], rule: str) -> None:
    """Mark rows billed or capped; a capped row cites the rule that capped it."""
    changed = []
    for row in rows:
        base = [r for r in row.rules if r != rule]
        if row.pk in billed:
            status = ChargeStatus.PENDING if row.pending_until else ChargeStatus.FINAL
            new = (status, base)
        else:
            new = (ChargeStatus.CAPPED, [*base, rule])
        if (row.status, row.rules) != new:
            row.status, row.rules = new
            changed.append(row)
    Charge.objects.bulk_update(changed, ["status", "rules"], batch_size=1000)


def _cap_in_sql(
    account_id: int, meter: str, start: datetime, end: datetime, limit: int, rule: str
) -> None:
    """_cap_rows in one statement: rank the period's units, bill the first `limit`.

    Past a cap every batch re-ranks the whole period; in SQL that costs a sort of the
    period's rows instead of loading them all into Python.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH ranked AS (
                SELECT id, row_number() OVER (
                    ORDER BY billable_at, subject COLLATE "C", unit) AS n
                FROM metering_charge
                WHERE account_id = %(account)s AND meter = %(meter)s
                  AND status IN ('final', 'pending', 'capped')
                  AND billable_at >= %(start)s AND billable_at < %(end)s
            ), target AS (
                SELECT c.id,
                       CASE WHEN r.n > %(limit)s THEN 'capped'
                            WHEN c.pending_until IS NULL THEN 'final' ELSE 'pending' END AS status
                FROM metering_charge c JOIN ranked r ON r.id = c.id
            )
            UPDATE metering_charge c
            SET status = t.status,
                rules = CASE WHEN t.status = 'capped'
                             THEN (c.rules - %(rule)s) || to_jsonb(%(rule)s::text)
                             ELSE c.rules - %(rule)s END
            FROM target t
            WHERE c.id = t.id AND c.status <> t.status
            """,
            {
                "account": account_id,
                "meter": meter,
                "start": start,
                "end": end,
                "limit": limit,
                "rule": rule,
            },
        )


def _ordered(account_id: int, meter: str, start: datetime, end: datetime) -> list[Charge]:
    return list(
        Charge.objects.filter(
            account_id=account_id,
            meter=meter,
            status__in=_COUNTED,
            billable_at__gte=start,
            billable_at__lt=end,
        ).order_by("billable_at", "subject", "unit")
    )


def convert_cap(
    *,
    account_id: int,
    limit: int,
    anchor: datetime,
    interval: str,
    period_start: datetime,
    counts: tuple[int, int],
    as_of: datetime,
    entitlements: _Entitlements,
) -> None:
    """C2: beyond the Convert tier's clicks (`limit`; 0 without the add-on), clicks are
    recorded, not billed, and campaigns pause until the period ends. `counts` are the
    period's (counted, capped) clicks."""
    _, period_end = periods.usage_period_containing(anchor, period_start, interval)
    counted, capped = counts
    # The common case, under the cap with nothing capped, loads no row at all.
    if counted > limit or capped:
        if connection.vendor == "postgresql":
            _cap_in_sql(account_id, t.CONVERT_CLICKS, period_start, period_end, limit, "C2")
        else:
            rows = _ordered(account_id, t.CONVERT_CLICKS, period_start, period_end)
            _cap_rows(rows, {row.pk for row in rows[:limit]}, "C2")
    if period_start <= as_of < period_end:  # only the current period drives what is shown now
        entitlements.set(
            account_id,
            Feature.CONVERT_CAMPAIGNS,
            paused_until=period_end if counted >= limit else None,
            reason=f"Convert limit of {limit:,} clicks reached.",
        )


def resolutions_limit(
    *,
    subscription: Subscription,
    period_start: datetime,
    as_of: datetime,
    entitlements: _Entitlements,
) -> None:
    """Z9: the account's own monthly limit pauses AI until next month; with `pause`, so does
    the allocation (plus commitment) of the allocation term — the billing cycle: a month on a
    monthly edition, a year on an annual one (Z8). Paused resolutions are not billed."""
    anchor, interval = subscription.billing_anchor, subscription.interval
    monthly = subscription.ai_monthly_limit
    term_limit = None
    if subscription.edition_id and subscription.ai_at_limit == Subscription.AtLimit.PAUSE:
        edition = subscription_terms(subscription).edition
        assert edition is not None  # edition_id is set
        term_limit = pricing.resolution_limit(edition=edition)
    term_start, term_end = allocation_term(subscription, period_start)
    rows = _ordered(subscription.account_id, t.AUTOMATED_RESOLUTIONS, term_start, term_end)
    billed: set[int] = set()
    in_term = 0
    in_month: dict[datetime, int] = {}
    for row in rows:
        assert row.billable_at is not None  # _ordered filters on it
        month = periods.usage_period_containing(anchor, row.billable_at, interval)[0]
        if (term_limit is None or in_term < term_limit) and (
            monthly is None or in_month.get(month, 0) < monthly
        ):
            billed.add(row.pk)
            in_term += 1
            in_month[month] = in_month.get(month, 0) + 1
    _cap_rows(rows, billed, "Z9")
    if not term_start <= as_of < term_end:
        return
    month_start, month_end = periods.usage_period_containing(anchor, as_of, interval)
    if term_limit is not None and in_term >= term_limit:
        entitlements.set(
            subscription.account_id,
            Feature.AI_AGENTS,
            paused_until=term_end,
            reason=f"Automated-resolution limit of {term_limit:,} reached.",
        )
    elif monthly is not None and in_month.get(month_start, 0) >= monthly:
        entitlements.set(
            subscription.account_id,
            Feature.AI_AGENTS,
            paused_until=month_end,
            reason=f"Monthly limit of {monthly:,} automated resolutions reached.",
        )
    else:
        entitlements.set(subscription.account_id, Feature.AI_AGENTS, paused_until=None)


def entitlements_expire(*, as_of: datetime) -> int:
    """Pauses end with their period: campaigns and AI run again in the next one."""
    with transaction.atomic():
        ending = list(
            Entitlement.objects.select_for_update().filter(
                state=Entitlement.State.PAUSED, until__lte=as_of
            )
        )
        return _resume(ending, reason="the pause ended with its period", at=as_of)


def _resume(rows: list[Entitlement], *, reason: str, at: datetime) -> int:
    """Switch these locked rows back on: audited, told to partners, in the caller's
    transaction."""
    audit_record_many(
        audit_entry(
            action="entitlement.state",
            obj=row,
            label=row.feature,
            before=row.state,
            after="active",
            reason=reason,
            at=at,
        )
        for row in rows
    )
    count = Entitlement.objects.filter(pk__in=[row.pk for row in rows]).update(
        state=Entitlement.State.ACTIVE, until=None, reason=""
    )
    outbox.entitlements_resumed_emit([(row.account_id, row.feature) for row in rows])
    return count


def entitlements_end(*, account_id: int, at: datetime) -> None:
    """The subscription ended (canceled at its cycle's end): every feature is switched off,
    with no end date, until a new subscription starts."""
    # The last day of service, as every page names it ("until", never the exclusive boundary).
    reason = f"Subscription ended: service ran until {periods.format_last_day(at)}."
    for feature in Feature.values:
        before = (
            Entitlement.objects.filter(account_id=account_id, feature=feature)
            .values_list("state", flat=True)
            .first()
        )
        row, _ = Entitlement.objects.update_or_create(
            account_id=account_id,
            feature=feature,
            defaults={"state": Entitlement.State.SUSPENDED, "until": None, "reason": reason},
        )
        audit_record(
            action="entitlement.state",
            obj=row,
            label=feature,
            before=before or "active",
            after=Entitlement.State.SUSPENDED,
            reason=reason,
            at=at,
        )
        outbox.entitlement_changed_emit(
            account_id=account_id, feature=feature, state=row.state, until=None
        )


def entitlements_restore(*, account_id: int, at: datetime) -> list[str]:
    """A new subscription started after the last one ended: the features its end switched off
    are switched back on (audited, and told to partners). Pauses of limits are left as they
    are; they end with their own period. Returns the features switched on."""
    ended = list(
        Entitlement.objects.select_for_update().filter(
            account_id=account_id, state=Entitlement.State.SUSPENDED
        )
    )
    _resume(ended, reason="A new subscription started.", at=at)
    return [row.feature for row in ended]

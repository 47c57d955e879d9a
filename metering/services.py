"""Write paths of metering: ingest events, re-evaluate subjects, apply hard caps."""

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.models import Account
from plans import periods

from . import event_store, limits, rules
from .models import Charge, ChargeStatus, Event, Reevaluation, SubjectKind, TicketMerge
from .validation import EventError, EventIn, validate_event

logger = logging.getLogger(__name__)

MAX_BATCH = 1000
REEVALUATION_BATCH = 2000


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict] = field(default_factory=list)

    def reject(self, index: int, error: EventError) -> None:
        self.rejected.append({"index": index, "error": error.as_dict()})


def events_ingest(
    *,
    raw_events: Sequence,
    accounts: QuerySet[Account],
    fixed_account: Account | None,
    now: datetime | None = None,
) -> IngestResult:
    """Validate and store a batch; each bad event is rejected alone with its index and reason.

    `accounts` are the accounts the caller may write to; `fixed_account` is set for an account
    key (events may omit `account`). New events mark their subjects for re-evaluation.
    """
    now = now or timezone.now()
    result = IngestResult()
    valid: list[tuple[int, EventIn]] = []
    for index, raw in enumerate(raw_events):
        checked = validate_event(raw, now=now)
        if isinstance(checked, EventError):
            result.reject(index, checked)
        elif fixed_account is None and checked.account is None:
            result.reject(index, EventError("account", "'account' is required with a partner key."))
        else:
            valid.append((index, checked))
    account_ids = _resolve_accounts(valid, accounts, fixed_account)
    rows, seen = [], set()
    for index, event in valid:
        slug = event.account or fixed_account.slug
        account_id = account_ids.get(slug)
        if account_id is None:
            result.reject(index, EventError("account", f"No account '{slug}'.", "not_found"))
            continue
        if (account_id, event.id) in seen:
            result.duplicates += 1  # the same id twice in one batch: stored once
            continue
        seen.add((account_id, event.id))
        rows.append(
            (
                account_id,
                event.id,
                event.type,
                event.occurred_at,
                now,
                event.ticket,
                event.session,
                event.customer,
                event.channel,
                event.author,
                event.attrs,
            )
        )
    with transaction.atomic():
        inserted = event_store.insert_events(rows)
        event_store.mark_for_reevaluation(_subjects_of(inserted))
        event_store.record_merges(
            (row[0], row[5], row[10]["into"], row[3])
            for row in inserted
            if row[2] == rules.types.TICKET_MERGED
        )
        if inserted:
            _schedule_reevaluation()
    result.accepted = len(inserted)
    result.duplicates += len(rows) - len(inserted)
    result.rejected.sort(key=lambda r: r["index"])
    return result


def _resolve_accounts(
    valid: list[tuple[int, EventIn]], accounts: QuerySet[Account], fixed: Account | None
) -> dict[str, int]:
    """Slug → id for the slugs the caller may reach; unknown and foreign slugs stay absent."""
    if fixed is not None:
        return {fixed.slug: fixed.pk}
    slugs = {event.account for _, event in valid}
    return dict(accounts.filter(slug__in=slugs).values_list("slug", "pk"))


def _subjects_of(rows: Iterable[tuple]) -> Iterable[tuple[int, str, str]]:
    for account_id, _, kind, _, _, ticket, session, *_ in rows:
        if kind == rules.types.CAMPAIGN_CLICK:
            yield account_id, SubjectKind.BROWSER_SESSION, session
        elif kind == rules.types.AI_SESSION_EVENT:
            yield account_id, SubjectKind.AI_SESSION, session
        else:
            yield account_id, SubjectKind.TICKET, ticket


def _schedule_reevaluation() -> None:
    # Imported here: tasks import services, and the task must only run once the events are
    # committed (in-process runs would otherwise see an empty queue).
    from .tasks import reevaluate_pending_task

    transaction.on_commit(reevaluate_pending_task.delay)


def reevaluate_pending(*, as_of: datetime | None = None, limit: int = REEVALUATION_BATCH) -> int:
    """Claim up to `limit` marked subjects, re-evaluate them, write their charges. Returns the
    number claimed. Safe to run concurrently: claims skip rows another worker holds."""
    as_of = as_of or timezone.now()
    with transaction.atomic():
        claimed = _claim(limit)
        if claimed:
            reevaluate(subjects=claimed, as_of=as_of)
    return len(claimed)


def reevaluate_all_pending(*, as_of: datetime | None = None) -> int:
    """Drain the queue (the in-process demo and run_billing use this)."""
    total = 0
    while count := reevaluate_pending(as_of=as_of):
        total += count
    return total


def _claim(limit: int) -> list[tuple[int, str, str]]:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM metering_reevaluation WHERE id IN ("
                " SELECT id FROM metering_reevaluation ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED"
                ") RETURNING account_id, kind, subject",
                [limit],
            )
            return cursor.fetchall()
    marks = list(
        Reevaluation.objects.order_by("pk")[:limit].values_list(
            "pk", "account_id", "kind", "subject"
        )
    )
    Reevaluation.objects.filter(pk__in=[m[0] for m in marks]).delete()
    return [m[1:] for m in marks]


def windows_finalize(*, as_of: datetime) -> int:
    """Re-evaluate every subject whose pending window has closed by `as_of` (A5, Z2–Z7)."""
    due = (
        Charge.objects.filter(status=ChargeStatus.PENDING, pending_until__lte=as_of)
        .values_list("account_id", "subject_kind", "subject")
        .distinct()
    )
    event_store.mark_for_reevaluation(due)
    return reevaluate_all_pending(as_of=as_of)


def reevaluate(*, subjects: Sequence[tuple[int, str, str]], as_of: datetime) -> None:
    """Evaluate subjects from all their events and replace their charge rows."""
    by_kind: dict[str, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    for account_id, kind, subject in subjects:
        by_kind[kind][account_id].add(subject)
    tickets = _expand_families(by_kind[SubjectKind.TICKET])
    outcomes: list[tuple[int, rules.Outcome]] = []
    failed: set[tuple[int, str, str]] = set()

    def judge(account_id, kind, subjects, evaluate, events):
        try:
            outcomes.extend((account_id, o) for o in evaluate(events, as_of=as_of))
        except ValueError:
            # Contradictory events (one session naming two agent kinds, ...): keep the
            # subject's previous verdict and tell the operators, but let the batch go on.
            logger.exception(
                "Cannot evaluate %s %s of account %s", kind, sorted(subjects), account_id
            )
            failed.update((account_id, kind, s) for s in subjects)

    for account_id, families in _ticket_families(tickets).items():
        events = _load_events("ticket", {account_id: set().union(*families)})
        for family in families:
            family_events = [e for e in events.get(account_id, ()) if e.ticket in family]
            judge(account_id, SubjectKind.TICKET, family, rules.evaluate_tickets, family_events)
    for kind, evaluate, event_type in (
        (SubjectKind.AI_SESSION, rules.evaluate_ai_session, rules.types.AI_SESSION_EVENT),
        (SubjectKind.BROWSER_SESSION, rules.evaluate_browser_session, rules.types.CAMPAIGN_CLICK),
    ):
        wanted = by_kind[kind]
        if not wanted:
            continue
        events = _load_events("session", wanted, event_type=event_type)
        for account_id, sessions in wanted.items():
            grouped: dict[str, list[rules.Event]] = defaultdict(list)
            for event in events.get(account_id, ()):
                grouped[event.session].append(event)
            for session in sessions:
                judge(account_id, kind, {session}, evaluate, grouped.get(session, []))
    evaluated = {
        (account_id, SubjectKind.TICKET, t) for account_id, ts in tickets.items() for t in ts
    } | {
        (a, k, s)
        for k in (SubjectKind.AI_SESSION, SubjectKind.BROWSER_SESSION)
        for a, ss in by_kind[k].items()
        for s in ss
    }
    touched_periods = _replace_charges(evaluated - failed, outcomes, as_of)
    limits.apply_limits(touched=touched_periods, as_of=as_of)


def _expand_families(tickets: dict[int, set[str]]) -> dict[int, set[str]]:
    """Add every ticket linked to the given ones by merges, transitively (M1)."""
    result = {a: set(ts) for a, ts in tickets.items() if ts}
    frontier = {a: set(ts) for a, ts in result.items()}
    while frontier:
        condition = Q()
        for account_id, ts in frontier.items():
            condition |= Q(account_id=account_id) & (Q(source__in=ts) | Q(into__in=ts))
        frontier = defaultdict(set)
        for account_id, source, into in TicketMerge.objects.filter(condition).values_list(
            "account_id", "source", "into"
        ):
            for ticket in (source, into):
                if ticket not in result[account_id]:
                    result[account_id].add(ticket)
                    frontier[account_id].add(ticket)
        frontier = dict(frontier)
    return result


def _ticket_families(tickets: dict[int, set[str]]) -> dict[int, list[set[str]]]:
    """Split each account's tickets into families (connected by merges) for evaluation."""
    merges = TicketMerge.objects.none()
    if tickets:
        condition = Q()
        for account_id, ts in tickets.items():
            condition |= Q(account_id=account_id, source__in=ts)
        merges = TicketMerge.objects.filter(condition).values_list("account_id", "source", "into")
    parent: dict[tuple[int, str], tuple[int, str]] = {}

    def find(node):
        while parent.get(node, node) != node:
            node = parent[node]
        return node

    for account_id, source, into in merges:
        parent[find((account_id, source))] = find((account_id, into))
    families: dict[int, dict[tuple, set[str]]] = defaultdict(lambda: defaultdict(set))
    for account_id, ts in tickets.items():
        for ticket in ts:
            families[account_id][find((account_id, ticket))].add(ticket)
    return {a: list(groups.values()) for a, groups in families.items()}


_FIELDS = (
    "account_id",
    "event_id",
    "type",
    "occurred_at",
    "ticket",
    "customer",
    "channel",
    "author",
    "session",
    "attrs",
)


def _load_events(
    by: str, wanted: dict[int, set[str]], event_type: str | None = None
) -> dict[int, list[rules.Event]]:
    """All events of the wanted tickets or sessions, as rule-engine events, per account."""
    condition = Q()
    for account_id, keys in wanted.items():
        condition |= Q(account_id=account_id, **{f"{by}__in": list(keys)})
    queryset = Event.objects.filter(condition)
    if event_type:
        queryset = queryset.filter(type=event_type)
    elif by == "ticket":
        queryset = queryset.exclude(
            type__in=[rules.types.CAMPAIGN_CLICK, rules.types.AI_SESSION_EVENT]
        )
    result: dict[int, list[rules.Event]] = defaultdict(list)
    for (
        account_id,
        event_id,
        kind,
        at,
        ticket,
        customer,
        channel,
        author,
        session,
        attrs,
    ) in queryset.values_list(*_FIELDS).iterator(chunk_size=5000):
        result[account_id].append(
            rules.Event(
                id=event_id,
                type=kind,
                occurred_at=at,
                ticket=ticket,
                customer=customer,
                channel=channel,
                author=author,
                session=session,
                attrs=attrs,
            )
        )
    return result


def _anchors(account_ids: Iterable[int]) -> dict[int, datetime]:
    """Each account's billing anchor: usage periods are monthly from it (plans.periods)."""
    from plans.models import Subscription

    anchors = dict(
        Subscription.objects.filter(account_id__in=account_ids)
        .order_by("account_id", "started_at")
        .values_list("account_id", "billing_anchor")
    )
    missing = set(account_ids) - set(anchors)
    anchors.update(Account.objects.filter(pk__in=missing).values_list("pk", "created_at"))
    return anchors


def _replace_charges(
    evaluated: set[tuple[int, str, str]],
    outcomes: list[tuple[int, rules.Outcome]],
    as_of: datetime,
) -> set[tuple[int, str, datetime]]:
    """Swap the subjects' charge rows for the new verdicts; return the (account, meter, period)
    triples that now hold counted units (limits are re-applied to those)."""
    grouped: dict[tuple[int, str], list[str]] = defaultdict(list)
    for account_id, kind, subject in evaluated:
        grouped[(account_id, kind)].append(subject)
    condition = Q()
    for (account_id, kind), subjects in grouped.items():
        condition |= Q(account_id=account_id, subject_kind=kind, subject__in=subjects)
    recorded: dict[tuple, datetime] = {}
    if grouped:
        existing = Charge.objects.filter(condition)
        recorded = {
            (a, k, s, m, u): at
            for a, k, s, m, u, at in existing.values_list(
                "account_id", "subject_kind", "subject", "meter", "unit", "recorded_at"
            )
        }
        existing.delete()
    anchors = _anchors({a for a, _, _ in evaluated})
    rows, touched = [], set()
    for account_id, outcome in outcomes:
        period_start = None
        if outcome.billable_at is not None:
            period_start, _ = periods.usage_period_containing(
                anchors[account_id], outcome.billable_at
            )
            touched.add((account_id, outcome.meter, period_start))
        rows.append(
            Charge(
                account_id=account_id,
                subject_kind=outcome.subject_kind,
                subject=outcome.subject,
                meter=outcome.meter,
                unit=outcome.unit,
                status=outcome.status,
                billable_at=outcome.billable_at,
                pending_until=outcome.pending_until,
                period_start=period_start,
                rules=list(outcome.rules),
                evaluated_at=as_of,
                recorded_at=recorded.get(
                    (
                        account_id,
                        outcome.subject_kind,
                        outcome.subject,
                        outcome.meter,
                        outcome.unit,
                    ),
                    as_of,
                ),
            )
        )
    Charge.objects.bulk_create(rows, batch_size=2000)
    return touched

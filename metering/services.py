"""Write paths of metering: ingest events, re-evaluate subjects, apply hard caps."""

import contextlib
import functools
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import redis
from celery import current_app
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from accounts.models import Account
from audit.bulk import collector_paused
from plans import periods
from plans.models import Subscription
from retries import Exponential

from . import event_store, guard, holds, limits, partitions, rules
from .models import (
    Charge,
    ChargeStatus,
    Reevaluation,
    SubjectKind,
    TicketMerge,
    UsageExclusion,
    UsageHold,
)
from .validation import EventError, EventIn, validate_events

logger = logging.getLogger(__name__)

MAX_BATCH = 1000
REEVALUATION_BATCH = 2000
# A worker holding a lease longer than this has died; its subjects are claimable again.
LEASE = timedelta(minutes=5)
# A subject that cannot be evaluated is tried again after 1, 2, 4, … minutes, at most 6 hours.
RETRY_BACKOFF = Exponential(first=timedelta(minutes=1), cap=timedelta(hours=6))
# tasks.reevaluate_pending_task, queued by name after an ingest commits, unless one is queued
# already: a flag in the broker's Redis says so for this long at most (`_enqueue_reevaluation`).
REEVALUATE_PENDING_TASK = "metering.reevaluate_pending"
REEVALUATION_QUEUED_FLAG = "metering:reevaluate-pending:queued"
REEVALUATION_QUEUED_SECONDS = 10
# The database or its connection failing is no subject's fault: such a batch is released whole
# and retried, never set aside subject by subject.
_NOT_THE_SUBJECTS_FAULT = (OperationalError, InterfaceError)


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
    for index, checked in enumerate(validate_events(raw_events, now=now)):
        if isinstance(checked, EventError):
            result.reject(index, checked)
        elif fixed_account is None and checked.account is None:
            result.reject(index, EventError("account", "'account' is required with a partner key."))
        else:
            valid.append((index, checked))
    reach = _resolve_accounts(valid, accounts, fixed_account)
    rows: list[tuple] = []
    seen: set[tuple[int, str]] = set()
    for index, event in valid:
        slug = event.account
        if not slug:
            assert fixed_account is not None  # without a fixed account it was rejected above
            slug = fixed_account.slug
        found = reach.get(slug.lower())  # slugs are kept in lower case
        if found is None:
            result.reject(index, EventError("account", f"No account '{slug}'.", "not_found"))
            continue
        account_id, counts_from = found
        if event.occurred_at < counts_from:
            result.reject(index, _before_subscription(counts_from))
            continue
        key = (account_id, event.id)
        if key in seen:
            result.duplicates += 1  # the same id twice in one batch: stored once
            continue
        seen.add(key)
        # event_store's row: EventIn's fields in their order, the account's id for its slug
        # and the time received after occurred_at.
        _, event_id, kind, occurred_at, *rest = event
        rows.append((account_id, event_id, kind, occurred_at, now, *rest))
    inserted = _store(rows, now)
    result.accepted = inserted
    result.duplicates += len(rows) - inserted
    result.rejected.sort(key=lambda r: r["index"])
    return result


def _store(rows: list[tuple], now: datetime, attempts: int = 3) -> int:
    """Store the events and mark their subjects in one transaction, retried on a deadlock;
    return how many were new."""
    for attempt in range(attempts):
        try:
            return _store_once(rows, now)
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != "40P01" or attempt == attempts - 1:
                raise
            logger.warning("Deadlock while storing %d events; retrying", len(rows))
    return 0


def _store_once(rows: list[tuple], now: datetime) -> int:
    with transaction.atomic():
        inserted = event_store.store_events(rows, now=now)
        if inserted:
            _schedule_reevaluation()
    return inserted


def _resolve_accounts(
    valid: list[tuple[int, EventIn]], accounts: QuerySet[Account], fixed: Account | None
) -> dict[str, tuple[int, datetime]]:
    """Slug → (id, the instant its events count from) for the slugs the caller may reach;
    unknown and foreign slugs stay absent. One query for the batch, whatever its size.

    Events count from the start of the account's first subscription: the start of the usage
    period it began in, which for a customer migrated mid-cycle (P1) is the start of the period
    already under way, so that period's earlier events are billed with it. Before that no
    period of ours holds them (the sender's backfill, a wrong clock, or a helpdesk that was
    someone else's customer then): they are refused one by one, never stored and counted in a
    period that was never billed. An account without a subscription counts from its creation.
    """
    if fixed is not None:
        found = Account.objects.filter(pk=fixed.pk)
    else:
        slugs = {event.account.lower() for _, event in valid if event.account}
        found = accounts.filter(slug__in=slugs)
    first = Subscription.objects.filter(account=OuterRef("pk")).order_by("started_at", "pk")
    rows = found.annotate(
        first_anchor=Subquery(first.values("billing_anchor")[:1]),
        first_started=Subquery(first.values("started_at")[:1]),
        first_interval=Subquery(first.values("interval")[:1]),
    ).values_list("slug", "pk", "created_at", "first_anchor", "first_started", "first_interval")
    reach = {}
    for slug, pk, created_at, anchor, started_at, interval in rows:
        counts_from = created_at
        if started_at is not None:
            counts_from = _first_period_start(anchor, started_at, interval)
        reach[slug] = (pk, counts_from)
    return reach


@functools.lru_cache(maxsize=4096)
def _first_period_start(anchor: datetime, started_at: datetime, interval: str) -> datetime:
    """The start of the usage period a subscription began in. Remembered per process: a pure
    function of its arguments, asked again for every account of every batch (16 µs a time)."""
    return periods.usage_period_containing(anchor, started_at, interval)[0]


def _before_subscription(counts_from: datetime) -> EventError:
    return EventError(
        "occurred_at",
        "'occurred_at' is before the account's first subscription started "
        f"({counts_from:%Y-%m-%dT%H:%M:%SZ}): no period of the account holds it.",
        "before_subscription",
    )


def _schedule_reevaluation() -> None:
    # The task must only run once the events are committed (in-process runs would otherwise
    # see an empty queue).
    transaction.on_commit(_enqueue_reevaluation)


def _enqueue_reevaluation() -> None:
    """Ask a worker to drain the queue now, unless a task asked for earlier has not started
    yet; a failure here never fails the ingest.

    The queue is the database's (`Reevaluation` rows, written with the events): with the broker
    down, the subjects wait there for the periodic sweep (beat's `metering.finalize_windows`,
    and `run_billing`), and the sender still gets its 202. No retry: a broker that is down
    would hold every ingest request for its connection timeouts.

    One task waiting is enough, and sending one costs more than storing a small batch, so a
    flag in the broker's Redis (`SET NX`, REEVALUATION_QUEUED_SECONDS) says one is queued, and
    the task clears it as it starts (`reevaluate_queued`), before it claims anything. Nothing
    is lost by skipping: these events were committed before the flag was read, and the task
    that set it starts after that, so it claims them; its drain runs until the queue is empty,
    and events committed after its start find the flag cleared and send a task of their own.
    Should that task never start (the broker lost it, its worker died before it started), the
    flag expires within seconds and the next ingest sends another, and beat's sweep drains the
    database queue every five minutes whatever happened to the broker.
    """
    flag = _queued_flag()
    try:
        if flag is not None and not flag.set(
            REEVALUATION_QUEUED_FLAG, 1, nx=True, ex=REEVALUATION_QUEUED_SECONDS
        ):
            return  # a task is queued and has not started: it will claim these events
    except redis.RedisError:
        flag = None  # cannot tell: send one, as without a flag
    try:
        # By name: tasks.py imports this module, never the other way round (metering.apps
        # registers the task in every process, so an in-process run still runs it here).
        current_app.tasks[REEVALUATE_PENDING_TASK].apply_async(retry=False)
    except Exception:
        logger.exception("Could not queue re-evaluation; the periodic sweep will pick it up")
        if flag is not None:
            with contextlib.suppress(redis.RedisError):  # else it expires by itself
                flag.delete(REEVALUATION_QUEUED_FLAG)


# One client per broker URL and process (tests point Celery at other brokers).
_flag_clients: dict[str, redis.Redis] = {}


def _queued_flag() -> redis.Redis | None:
    """The broker's Redis, where the queued-task flag lives beside the queue it speaks of (a
    Redis restart loses both together); None with another broker (the in-process demo)."""
    url = str(current_app.conf.broker_url or "")
    if not url.startswith(("redis://", "rediss://")):
        return None
    client = _flag_clients.get(url)
    if client is None:
        # Short timeouts: a Redis that does not answer must not hold the ingest's answer.
        client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        _flag_clients[url] = client
    return client


def reevaluate_queued() -> int:
    """The queued task's work: clear the flag that says it is queued (`_enqueue_reevaluation`),
    then drain the queue. Cleared first, so that events committed from now on send a task of
    their own, while those committed before are claimed by this drain."""
    flag = _queued_flag()
    if flag is not None:
        try:
            flag.delete(REEVALUATION_QUEUED_FLAG)
        except redis.RedisError:
            # It expires by itself; until then ingests rely on tasks already queued and beat.
            logger.warning("Could not clear the re-evaluation flag", exc_info=True)
    return reevaluate_all_pending()


def reevaluate_pending(*, as_of: datetime | None = None, limit: int = REEVALUATION_BATCH) -> int:
    """Lease up to `limit` marked subjects, re-evaluate them, write their charges. Returns the
    number claimed. Safe to run concurrently: leased subjects are skipped by other workers.
    A subject that fails is set aside (`Reevaluation.attempts`, `next_attempt_at`), never the
    batch."""
    now = timezone.now()
    as_of = as_of or now
    claims = event_store.claim_reevaluations(limit, now=now, stale_before=now - LEASE)
    if not claims:
        return 0
    try:
        # Thousands of events, verdicts and charge rows live until the batch commits: the
        # cycle collector would walk them (and the whole application) again and again.
        with collector_paused():
            failed = _reevaluate_claims(claims, as_of=as_of)
    except BaseException:
        event_store.finish_reevaluations(claims, done=False)  # let another pass retry them
        raise
    # After the commit, in short transactions of their own: a set-aside row is locked alone.
    reevaluations_set_aside(failed=failed, now=now)
    return len(claims)


def _reevaluate_claims(claims: list[tuple], *, as_of: datetime) -> dict[tuple, str]:
    """Evaluate and finish the claims in one transaction; return the failed ones with why.

    The rules engine's failures are caught subject by subject (`reevaluate`). Anything else that
    fails the batch (a charge row the database refuses, a cap that cannot be applied) is found
    by halving: each half is tried in a transaction of its own, down to the subject at fault.
    """
    try:
        with transaction.atomic():
            failed_subjects = reevaluate(subjects=[claim[2:] for claim in claims], as_of=as_of)
            outcomes = {claim: failed_subjects[claim[2:]] for claim in claims}
            failed = {claim: error for claim, error in outcomes.items() if error is not None}
            done = [claim for claim in claims if claim not in failed]
            event_store.finish_reevaluations(done, done=True)
            return failed
    except _NOT_THE_SUBJECTS_FAULT:
        raise
    except Exception as exc:
        if len(claims) == 1:
            _, _, account_id, kind, subject = claims[0]
            logger.exception(
                "Cannot store the evaluation of %s %s of account %s", kind, subject, account_id
            )
            return {claims[0]: _describe(exc)}
        half = len(claims) // 2
        return {
            **_reevaluate_claims(claims[:half], as_of=as_of),
            **_reevaluate_claims(claims[half:], as_of=as_of),
        }


def reevaluations_set_aside(*, failed: dict[tuple, str], now: datetime) -> None:
    """Record each failed claim's error and when to try it again (exponential backoff)."""
    for claim in sorted(failed, key=lambda claim: claim[2:]):  # the queue's lock order
        row_id, error = claim[0], failed[claim]
        with transaction.atomic():
            row = Reevaluation.objects.select_for_update().filter(pk=row_id).first()
            if row is None:
                continue
            row.attempts += 1
            row.last_error = error
            row.failed_at = now
            row.next_attempt_at = now + retry_delay(row.attempts)
            row.claimed_at = None
            row.save(
                update_fields=[
                    "attempts",
                    "last_error",
                    "failed_at",
                    "next_attempt_at",
                    "claimed_at",
                ]
            )


def retry_delay(attempts: int) -> timedelta:
    """How long a subject that failed `attempts` times in a row waits before the next try."""
    return RETRY_BACKOFF.wait(attempts)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


def reevaluate_all_pending(*, as_of: datetime | None = None) -> int:
    """Drain the queue (the in-process demo and run_billing use this)."""
    total = 0
    while count := reevaluate_pending(as_of=as_of):
        total += count
    return total


def windows_finalize(*, as_of: datetime) -> int:
    """Re-evaluate every subject whose pending window has closed by `as_of` (A5, Z2–Z7)."""
    due = (
        Charge.objects.filter(status=ChargeStatus.PENDING, pending_until__lte=as_of)
        .values_list("account_id", "subject_kind", "subject")
        .distinct()
    )
    event_store.mark_for_reevaluation(due, now=timezone.now())
    return reevaluate_all_pending(as_of=as_of)


def metering_tick(*, as_of: datetime) -> int:
    """What metering's clock does, in one order wherever it runs (the periodic task and each
    run_billing): pending windows that closed become final, the per-day counters are folded,
    and pauses that ran out lift. Returns the subjects re-evaluated."""
    finalized = windows_finalize(as_of=as_of)
    usage_days_fold()  # the counters the pages read stay one row a key
    limits.entitlements_expire(as_of=as_of)
    return finalized


def usage_days_fold() -> int:
    """Periodic: merge the per-day counters' appended rows, so that a page reads about one
    row per (period, meter, day, status) however often charges changed (see UsageDay)."""
    return event_store.fold_usage_days()


def reevaluate(
    *, subjects: Sequence[tuple[int, str, str]], as_of: datetime
) -> dict[tuple[int, str, str], str | None]:
    """Evaluate subjects from all their events and replace their charge rows.

    Returns, for each subject asked for, None or why it could not be evaluated: such a subject
    keeps its previous charges, and the others go on.
    """
    by_kind: dict[str, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    for account_id, kind, subject in subjects:
        by_kind[kind][account_id].add(subject)
    families = _ticket_families(by_kind[SubjectKind.TICKET])
    tickets = {a: set().union(*fs) for a, fs in families.items()}
    anchors = _anchors({account_id for account_id, _, _ in subjects})
    verdicts: list[tuple[int, rules.Outcome, datetime | None]] = []
    failed: dict[tuple[int, str, str], str] = {}
    # Where each subject's charge rows may begin (_charges_since): its evaluation's events.
    first_events: dict[tuple[int, str, str], datetime] = {}
    last_period: dict[tuple[int, datetime], tuple[datetime, datetime]] = {}

    def period_of(account_id: int, billable_at: datetime | None) -> datetime | None:
        """The usage period containing `billable_at`; most of a batch's fall in the current one."""
        if billable_at is None:
            return None
        anchor, interval = cycle_at(anchors[account_id], billable_at)
        start, end = last_period.get((account_id, anchor), (billable_at, billable_at))
        if not start <= billable_at < end:
            start, end = periods.usage_period_containing(anchor, billable_at, interval)
            last_period[(account_id, anchor)] = (start, end)
        return start

    def judge(account_id, kind, subjects, evaluate, events):
        try:
            outcomes = evaluate(events, as_of=as_of)
            judged = [(account_id, o, period_of(account_id, o.billable_at)) for o in outcomes]
        except Exception as exc:
            # Contradictory events (one session naming two agent kinds), a date the calendar
            # cannot hold, a bug: keep the subject's previous verdict, tell the operators, set
            # it aside for a later try, and let the batch go on.
            logger.exception(
                "Cannot evaluate %s %s of account %s", kind, sorted(subjects), account_id
            )
            failed.update(dict.fromkeys(((account_id, kind, s) for s in subjects), _describe(exc)))
        else:
            verdicts.extend(judged)

    ticket_events = _load_events("ticket", SubjectKind.TICKET, tickets)  # one query for the batch
    events_of: dict[int, dict[str | None, list[rules.Event]]] = {}
    for account_id, account_families in families.items():
        # Keyed by Event.ticket, optional in the type; every event loaded by ticket has one.
        by_ticket: dict[str | None, list[rules.Event]] = defaultdict(list)
        events_of[account_id] = by_ticket
        for event in ticket_events.get(account_id, ()):
            by_ticket[event.ticket].append(event)
        for family in account_families:
            family_events = [e for ticket in family for e in by_ticket.get(ticket, ())]
            if family_events:
                first = min(e.occurred_at for e in family_events)
                first_events.update(
                    ((account_id, SubjectKind.TICKET, ticket), first) for ticket in family
                )
            judge(account_id, SubjectKind.TICKET, family, rules.evaluate_tickets, family_events)
    for kind, evaluate, event_type in (
        (SubjectKind.AI_SESSION, rules.evaluate_ai_session, rules.types.AI_SESSION_EVENT),
        (SubjectKind.BROWSER_SESSION, rules.evaluate_browser_session, rules.types.CAMPAIGN_CLICK),
    ):
        wanted = by_kind[kind]
        if not wanted:
            continue
        events = _load_events("session", kind, wanted, event_type=event_type)
        for account_id, sessions in wanted.items():
            grouped: dict[str | None, list[rules.Event]] = defaultdict(list)
            for event in events.get(account_id, ()):
                grouped[event.session].append(event)
            for session in sessions:
                session_events = grouped.get(session, [])
                if session_events:
                    first_events[(account_id, kind, session)] = min(
                        e.occurred_at for e in session_events
                    )
                judge(account_id, kind, {session}, evaluate, session_events)
    evaluated = {
        (account_id, SubjectKind.TICKET, t) for account_id, ts in tickets.items() for t in ts
    } | {
        (a, k, s)
        for k in (SubjectKind.AI_SESSION, SubjectKind.BROWSER_SESSION)
        for a, ss in by_kind[k].items()
        for s in ss
    }
    touched_periods, earlier_of_loops = _replace_charges(
        evaluated - failed.keys(), verdicts, as_of, events_of, _charges_since(first_events)
    )
    if earlier_of_loops:  # tickets of a burst evaluated before it was one: held on their next pass
        event_store.mark_for_reevaluation(earlier_of_loops, now=timezone.now())
    limits.apply_limits(touched=touched_periods, as_of=as_of)
    return {subject: failed.get(subject) for subject in subjects}


def tickets_exclude(
    *,
    account_id: int,
    tickets: Sequence[str],
    reason: str,
    at: datetime,
    kind: str = SubjectKind.TICKET,
) -> None:
    """Take tickets (or other subjects of `kind`) out of billing (an accepted dispute,
    billing.ticket_disputes; excluded held units, billing.spike_guard): their
    verdicts are kept and shown, their counted units become `excluded`, now and on every later
    re-evaluation. Re-evaluated here, in the caller's transaction, so the caller reads the
    period without them; also marked, so a worker that evaluated them from a stale read
    evaluates them once more."""
    UsageExclusion.objects.bulk_create(
        [
            UsageExclusion(
                account_id=account_id,
                subject_kind=kind,
                subject=ticket,
                reason=reason[:300],
                excluded_at=at,
            )
            for ticket in tickets
        ],
        ignore_conflicts=True,
    )
    subjects = [(account_id, kind, ticket) for ticket in tickets]
    event_store.mark_for_reevaluation(subjects, now=at)
    reevaluate(subjects=subjects, as_of=at)


def holds_release(*, held: list[UsageHold], by: str, at: datetime) -> list[UsageHold]:
    """Release held units (metering.holds): they count again, re-evaluated here in the
    caller's transaction (and queued, for a worker that read them held). Returns the holds
    that were still active."""
    released = holds.holds_resolve(holds=held, how="released", by=by, at=at)
    subjects = sorted({(h.account_id, h.subject_kind, h.subject) for h in released})
    if subjects:
        event_store.mark_for_reevaluation(subjects, now=at)
        reevaluate(subjects=subjects, as_of=at)
    return released


def _loops_detect(verdicts, events_of, recorded) -> set[tuple[int, str, str]]:
    """The loop detector's look at the batch (metering.holds): the origin of each ticket
    counted for the first time, from its own events. A ticket counted before was looked at
    then; a burst it belongs to is found by whichever of its tickets comes last."""
    if not settings.SPIKE_GUARD_LOOPS:
        return set()
    before = {(a, s) for a, k, s, _, unit in recorded if k == SubjectKind.TICKET and unit}
    new: dict[int, set[str]] = defaultdict(set)
    for account_id, outcome, _ in verdicts:
        if (
            outcome.subject_kind == SubjectKind.TICKET
            and outcome.counted
            and (account_id, outcome.subject) not in before
        ):
            new[account_id].add(outcome.subject)
    origins: dict[int, list[guard.Origin]] = {}
    for account_id, tickets_counted in new.items():
        by_ticket = events_of.get(account_id, {})
        found = [guard.origin_of(t, by_ticket.get(t, ())) for t in sorted(tickets_counted)]
        origins[account_id] = [o for o in found if o is not None]
    return holds.loops_detect(origins, at=timezone.now())


def _ticket_families(tickets: dict[int, set[str]]) -> dict[int, list[set[str]]]:
    """Each account's tickets, grown by every ticket linked to them by merges (transitively,
    M1), and split into families: the sets evaluated together."""
    merged_accounts = set(
        TicketMerge.objects.filter(account_id__in=list(tickets)).values_list(
            "account_id", flat=True
        )
    )
    merges: set[tuple[int, str, str]] = set()
    frontier = {a: set(ts) for a, ts in tickets.items() if a in merged_accounts}
    grown = {a: set(ts) for a, ts in tickets.items()}
    while frontier:  # merges are rare: most batches never get here
        condition = Q()
        for account_id, ts in frontier.items():
            condition |= Q(account_id=account_id) & (Q(source__in=ts) | Q(into__in=ts))
        frontier = defaultdict(set)
        for merge in TicketMerge.objects.filter(condition).values_list(
            "account_id", "source", "into"
        ):
            merges.add(merge)
            account_id = merge[0]
            for ticket in merge[1:]:
                if ticket not in grown[account_id]:
                    grown[account_id].add(ticket)
                    frontier[account_id].add(ticket)
        frontier = dict(frontier)
    parent: dict[tuple[int, str], tuple[int, str]] = {}

    def root(node: tuple[int, str]) -> tuple[int, str]:
        while parent.get(node, node) != node:
            node = parent[node]
        return node

    for account_id, source, into in merges:
        parent[root((account_id, source))] = root((account_id, into))
    families: dict[int, dict[tuple, set[str]]] = defaultdict(lambda: defaultdict(set))
    for account_id, ts in grown.items():
        for ticket in ts:
            families[account_id][root((account_id, ticket))].add(ticket)
    return {a: list(groups.values()) for a, groups in families.items()}


def _load_events(
    by: str, kind: str, wanted: dict[int, set[str]], event_type: str | None = None
) -> dict[int, list[rules.Event]]:
    """All events of the wanted tickets or sessions, as rule-engine events, per account."""
    pairs = [(account_id, key) for account_id, keys in wanted.items() for key in keys]
    if event_type:
        rows = event_store.load_events(by, kind, pairs, (event_type,), exclude=False)
    else:  # a ticket's own events: everything but the two session-scoped types
        session_types = (rules.types.CAMPAIGN_CLICK, rules.types.AI_SESSION_EVENT)
        rows = event_store.load_events(by, kind, pairs, session_types, exclude=True)
    result: dict[int, list[rules.Event]] = defaultdict(list)
    for row in rows:  # (account id, *the event's fields in order)
        result[row[0]].append(rules.stored_event(row[1:]))
    return result


# (ended_at, billing anchor, interval) of one subscription of an account.
_Cycle = tuple[datetime | None, datetime, str]


def _anchors(account_ids: Iterable[int]) -> dict[int, list[_Cycle]]:
    """Each account's billing anchors and intervals, oldest subscription first, with the
    instant each one ended (None while live): usage periods are monthly (30-day on a 30d
    cycle) from an anchor (plans.periods), and a subscription started again after a
    cancellation has an anchor of its own."""
    from plans.models import Subscription

    anchors: dict[int, list[_Cycle]] = defaultdict(list)
    rows = (
        Subscription.objects.filter(account_id__in=account_ids)
        .order_by("account_id", "started_at", "pk")
        .values_list("account_id", "ended_at", "billing_anchor", "interval")
    )
    for account_id, ended_at, anchor, interval in rows:
        anchors[account_id].append((ended_at, anchor, interval))
    missing = set(account_ids) - set(anchors)
    for account_id, created_at in Account.objects.filter(pk__in=missing).values_list(
        "pk", "created_at"
    ):
        anchors[account_id].append((None, created_at, periods.MONTH))
    return anchors


def cycle_at(anchors: list[_Cycle], at: datetime) -> tuple[datetime, str]:
    """The anchor and interval of the first subscription not ended at `at`: the one in force
    then, or the next one for a unit that became billable between two (never billed: no
    period of either is closed around it). The last one's when all ended."""
    for ended_at, anchor, interval in anchors:
        if ended_at is None or at < ended_at:
            return anchor, interval
    return anchors[-1][1], anchors[-1][2]


# Longer than any usage period (a month is at most 31 days, a 30-day one 30: plans.periods).
_LONGEST_PERIOD = timedelta(days=32)
_EARLIEST_BOUND = datetime.min.replace(tzinfo=UTC) + _LONGEST_PERIOD


def _charges_since(
    first_events: dict[tuple[int, str, str], datetime],
) -> dict[tuple[int, str, str], datetime]:
    """Where each subject's charge rows with a period may begin, from the earliest event of
    its evaluation. A unit becomes billable at or after an event of the subject's family (an
    event's time, or the end of a window one opened), its row goes to the usage period holding
    that instant, and every earlier evaluation of the subject saw a subset of today's events
    (events are never deleted before the archive horizon, and families only grow). So no row
    of the subject lies in a period starting more than a period before its first event; the
    read skips the months before that (with two years kept: 28 index probes a subject)."""
    return {
        subject: first - _LONGEST_PERIOD
        for subject, first in first_events.items()
        if first >= _EARLIEST_BOUND  # a date of year 1 (stored before ingest refused it)
    }


def _replace_charges(
    evaluated: set[tuple[int, str, str]],
    verdicts: list[tuple[int, rules.Outcome, datetime | None]],
    as_of: datetime,
    events_of: dict,
    since: dict[tuple[int, str, str], datetime],
) -> tuple[set[tuple[int, str, datetime]], set[tuple[int, str, str]]]:
    """Turn the subjects' charge rows into the new verdicts (each with its usage period); return
    the (account, meter, period) triples that now hold counted units (limits are re-applied to
    those), and the tickets the loop detector held outside the batch."""
    # Usage of a period before the archive horizon is closed for good: its rows stay as they
    # are and no verdict is added there (metering.partitions).
    horizon = partitions.archive_horizon()
    existing = event_store.charges_read(sorted(evaluated), keep_before=horizon, since=since)
    # When each unit was first recorded, whatever period its row is in now.
    recorded = {row[1:6]: row[11] for row in existing}
    # Between the old rows and the new: the detector sees which tickets are counted for the
    # first time, and what it holds is written held below.
    earlier_of_loops = _loops_detect(verdicts, events_of, recorded)
    excluded = event_store.excluded_subjects(evaluated)
    held = holds.active_holds(evaluated)
    rows, touched = [], set()
    for account_id, o, period_start in verdicts:
        if horizon and period_start is not None and period_start < horizon:
            continue
        if period_start is not None:
            touched.add((account_id, o.meter, period_start))
        status, pending_until = o.status, o.pending_until
        subject = (account_id, o.subject_kind, o.subject)
        if o.counted and subject in excluded:
            status, pending_until = ChargeStatus.EXCLUDED, None  # kept, shown, never billed
        elif o.counted and holds.is_held(held, subject, o.meter):
            status, pending_until = ChargeStatus.HELD, None  # kept, shown, billed once released
        key = (account_id, o.subject_kind, o.subject, o.meter, o.unit)
        rows.append(
            (
                account_id,
                o.subject_kind,
                o.subject,
                o.meter,
                o.unit,
                status,
                o.billable_at,
                pending_until,
                period_start,
                list(o.rules),
                as_of,
                # first counted keeps its time across re-evaluations (late usage, F6)
                recorded.get(key, as_of),
            )
        )
    event_store.charges_write(existing, rows)
    return touched, earlier_of_loops

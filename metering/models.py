"""Usage events, what they make billable, and the account's entitlements.

Events are append-only. Billing is never patched: ingest marks the touched subjects
(`Reevaluation`), and a task re-evaluates each subject from all its events into `Charge`
rows. Usage per account, period and meter is read from those rows, never from events.
"""

from django.db import models
from django.db.models import Q

from accounts.models import Account
from plans.models import Meter

from .rules import types as rule_types


class SubjectKind(models.TextChoices):
    TICKET = rule_types.TICKET
    AI_SESSION = rule_types.AI_SESSION, "AI session"
    BROWSER_SESSION = rule_types.BROWSER_SESSION, "browser session"


class Event(models.Model):
    """One usage event as the helpdesk sent it. `attrs` keeps the type's own fields.

    On PostgreSQL the table is partitioned by the month of `received_at` (metering.partitions);
    an event id is stored once per account through `EventKey`, since a partitioned table can
    only enforce uniqueness within a month.
    """

    # Not checked by the database: ingest has just read the account (migration 0008).
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, db_index=False, db_constraint=False
    )
    event_id = models.CharField(max_length=255)
    type = models.CharField(max_length=24)
    occurred_at = models.DateTimeField(help_text="When it happened in the helpdesk.")
    received_at = models.DateTimeField(help_text="When we received it.")
    # NULL, not "", for an absent id: the partial indexes below skip events without one.
    ticket = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    session = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    customer = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    channel = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001
    author = models.CharField(max_length=16, null=True, blank=True)  # noqa: DJ001
    attrs = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["account", "ticket"],
                name="event_ticket_idx",
                condition=Q(ticket__isnull=False),
            ),
            models.Index(
                fields=["account", "session"],
                name="event_session_idx",
                condition=Q(session__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class EventKey(models.Model):
    """An (account, event id) received, whichever month it was received in: the idempotency
    key of ingest. A narrow unpartitioned table, so a sender's retry is recognised across
    months; its rows go when their month of events is archived (metering.partitions)."""

    pk = models.CompositePrimaryKey("account_id", "event_id")
    account = models.ForeignKey(
        Account, on_delete=models.DO_NOTHING, db_index=False, db_constraint=False
    )
    event_id = models.CharField(max_length=255)
    received_at = models.DateTimeField()

    class Meta:
        db_table = "metering_event_key"

    def __str__(self) -> str:
        return f"{self.account_id} {self.event_id}"


class TicketMerge(models.Model):
    """`source` was merged into `into` at `merged_at` (M1). Kept apart to find ticket families."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE)
    source = models.CharField(max_length=255)
    into = models.CharField(max_length=255)
    merged_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "source", "into"], name="merge_once"),
        ]
        indexes = [models.Index(fields=["account", "into"], name="merge_into_idx")]

    def __str__(self) -> str:
        return f"{self.source} → {self.into}"


class Reevaluation(models.Model):
    """A subject whose events changed (or whose window closed) and must be evaluated again.

    A work queue in the database, leased rather than locked: a worker claims rows in a short
    transaction (`claimed_at`, `claimed_version`), evaluates, and deletes only the rows whose
    `version` is still the one it claimed. Ingest re-marking a claimed subject bumps the
    version instead of waiting for the evaluation; the worker's finish then hands the row back
    (unclaimed), so the subject is evaluated once more, never by two workers at once. A lease
    older than a few minutes belongs to a worker that died: claimable again.

    A subject whose evaluation fails is set aside: its row stays, with the error, the number of
    failed attempts and when to try again (backing off), and its previous charges stand. It
    never holds up the rest of the queue.
    """

    # Not checked by the database: written for accounts ingest has just read (migration 0008).
    # No index of its own: `reeval_once` begins with it (migration 0011).
    account = models.ForeignKey(
        Account, on_delete=models.CASCADE, db_constraint=False, db_index=False
    )
    kind = models.CharField(max_length=16, choices=SubjectKind.choices)
    subject = models.CharField(max_length=255)
    marked_at = models.DateTimeField()
    version = models.PositiveIntegerField(default=0)
    claimed_version = models.PositiveIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    # Database defaults: ingest inserts queue rows in raw SQL (event_store).
    attempts = models.PositiveIntegerField(db_default=0, help_text="Failed evaluations so far.")
    last_error = models.TextField(blank=True, db_default="")
    failed_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="Set aside: not claimed before this instant."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "kind", "subject"], name="reeval_once"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.subject}"


class ChargeStatus(models.TextChoices):
    FINAL = rule_types.FINAL
    PENDING = rule_types.PENDING
    NOT_COUNTED = rule_types.NOT_COUNTED, "not counted"
    # Counted by the rules, but over a hard cap (C2) or a paused AI limit (Z9): recorded,
    # shown, never billed.
    CAPPED = "capped", "recorded, not billed"
    # Taken out of billing by an accepted dispute (UsageExclusion): kept and shown, never billed.
    EXCLUDED = "excluded", "excluded after a dispute"
    # Held for review by the spike guard (UsageHold): not billed until released (metering.holds).
    HELD = "held", "held for review"


class Charge(models.Model):
    """The verdict of the rules on one unit of one meter for one subject (a ticket, a session).

    `period_start` is the monthly usage period that contains `billable_at`: a unit counts in
    the period in which it became billable, never twice.

    On PostgreSQL the table is partitioned by the calendar month of `period_start`; verdicts
    with no period (not counted) live in its default partition (metering.partitions). A unit is
    unique per period; across periods it is kept unique by re-evaluation, which swaps all of a
    subject's rows in one transaction under the subject's lease.
    """

    # Not checked by the database: written from stored events (migration 0008).
    account = models.ForeignKey(
        Account, on_delete=models.CASCADE, db_index=False, db_constraint=False
    )
    subject_kind = models.CharField(max_length=16, choices=SubjectKind.choices)
    subject = models.CharField(max_length=255)
    meter = models.CharField(max_length=32, choices=Meter.choices)
    unit = models.PositiveIntegerField(
        help_text="1, 2, … for segments and clicks; 0 when not counted."
    )
    status = models.CharField(max_length=12, choices=ChargeStatus.choices)
    billable_at = models.DateTimeField(null=True, blank=True)
    pending_until = models.DateTimeField(null=True, blank=True)
    period_start = models.DateTimeField(null=True, blank=True)
    rules = models.JSONField(default=list, help_text='Rule ids that decided it, e.g. ["H1", "H2"].')
    evaluated_at = models.DateTimeField()
    recorded_at = models.DateTimeField(
        help_text="When this unit was first counted; kept across re-evaluations (late usage, F6)."
    )

    class Meta:
        constraints = [
            # The partition key is part of it: PostgreSQL enforces uniqueness on a partitioned
            # table only within a partition.
            models.UniqueConstraint(
                fields=["account", "subject_kind", "subject", "meter", "unit", "period_start"],
                name="charge_once_per_period",
            ),
            models.CheckConstraint(
                condition=Q(status__in=ChargeStatus.values), name="charge_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(status="not_counted")
                | Q(billable_at__isnull=False, period_start__isnull=False),
                name="charge_counted_has_period",
            ),
        ]
        indexes = [
            models.Index(fields=["account", "period_start", "meter"], name="charge_usage_idx"),
            models.Index(
                fields=["pending_until"], name="charge_pending_idx", condition=Q(status="pending")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.meter} {self.subject_kind} {self.subject} #{self.unit} ({self.status})"


class UsageExclusion(models.Model):
    """A subject taken out of billing (today: a ticket whose dispute was accepted, see
    billing.ticket_disputes). Its events and verdicts are kept; every re-evaluation writes its
    counted units as `excluded` instead of final or pending, so no close ever bills them and
    "Why was this billed?" says why."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, db_index=False)
    subject_kind = models.CharField(max_length=16, choices=SubjectKind.choices)
    subject = models.CharField(max_length=255)
    reason = models.CharField(max_length=300, help_text="Why, in the merchant's words.")
    excluded_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "subject_kind", "subject"], name="exclusion_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subject_kind} {self.subject} excluded"


class SpikeGuardMode(models.TextChoices):
    HOLD = "hold", "hold suspicious usage for review"
    ALERT_ONLY = "alert_only", "alert only: bill it, but tell me"


class SpikeGuard(models.Model):
    """An account's own spike-guard settings (metering.holds); no row means the defaults."""

    Mode = SpikeGuardMode

    account = models.OneToOneField(
        Account, primary_key=True, on_delete=models.CASCADE, related_name="spike_guard"
    )
    mode = models.CharField(
        max_length=12, choices=SpikeGuardMode.choices, default=SpikeGuardMode.HOLD
    )
    loop_tickets = models.PositiveSmallIntegerField(
        default=10, help_text="A requester (or a subject) opening more tickets than this…"
    )
    loop_minutes = models.PositiveSmallIntegerField(
        default=60, help_text="…within this many minutes."
    )
    anomaly_multiplier = models.PositiveSmallIntegerField(
        default=3, help_text="A day above this many times its usual volume…"
    )
    anomaly_margin = models.PositiveIntegerField(
        default=50, help_text="…and this many units above it, is an anomaly."
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.account_id}: {self.mode}"


class TicketOrigin(models.Model):
    """Who opened a counted ticket, about what, and when: what the loop detector counts
    (metering.holds). One narrow row per counted ticket with a requester."""

    pk = models.CompositePrimaryKey("account_id", "ticket")
    account = models.ForeignKey(
        Account, on_delete=models.DO_NOTHING, db_index=False, db_constraint=False
    )
    ticket = models.CharField(max_length=255)
    requester = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    subject = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    first_at = models.DateTimeField()

    class Meta:
        db_table = "metering_ticket_origin"
        indexes = [
            models.Index(
                fields=["account", "requester", "first_at"],
                name="origin_requester_idx",
                condition=Q(requester__isnull=False),
            ),
            models.Index(
                fields=["account", "subject", "first_at"],
                name="origin_subject_idx",
                condition=Q(subject__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.ticket} from {self.requester}"


class AnomalyStatus(models.TextChoices):
    OPEN = "open", "held for review"
    ALERTED = "alerted", "alert only: billed"
    RELEASED = "released"
    EXCLUDED = "excluded"


class UsageAnomaly(models.Model):
    """A day whose billable units on one meter are far above the same weekdays' (the daily
    check, metering.holds): its excess over the usual volume is held until someone looks."""

    Status = AnomalyStatus

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="anomalies")
    meter = models.CharField(max_length=32, choices=Meter.choices)
    day = models.DateField(help_text="The UTC day.")
    observed = models.PositiveIntegerField(help_text="Billable units that day, when checked.")
    baseline = models.PositiveIntegerField(help_text="The same weekdays' median.")
    spread = models.PositiveIntegerField(help_text="Their median absolute deviation.")
    weeks = models.PositiveSmallIntegerField(help_text="How many same weekdays it compared.")
    held = models.PositiveIntegerField(default=0, help_text="Units held (the excess).")
    status = models.CharField(max_length=10, choices=AnomalyStatus.choices)
    opened_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-day", "meter"]
        constraints = [
            models.UniqueConstraint(fields=["account", "meter", "day"], name="anomaly_once_a_day"),
        ]
        indexes = [models.Index(fields=["status"], name="anomaly_status_idx")]

    def __str__(self) -> str:
        return f"{self.meter} {self.day}: {self.observed} vs {self.baseline}"


class HoldKind(models.TextChoices):
    LOOP = "loop", "suspected loop"
    ANOMALY = "anomaly", "usage spike"


class UsageHold(models.Model):
    """Units held out of billing for review (metering.holds): a ticket of a suspected loop
    (every meter), or one unit of an anomalous day (one meter). Active until released (billed,
    on the next invoice when its period is closed) or excluded (as an accepted dispute), and
    released by itself after 14 days."""

    Kind = HoldKind

    account = models.ForeignKey(Account, on_delete=models.CASCADE, db_index=False)
    subject_kind = models.CharField(max_length=16, choices=SubjectKind.choices)
    subject = models.CharField(max_length=255)
    meter = models.CharField(max_length=32, blank=True, help_text="Empty: every meter.")
    kind = models.CharField(max_length=10, choices=HoldKind.choices)
    reason = models.CharField(max_length=300)
    anomaly = models.ForeignKey(
        UsageAnomaly, null=True, blank=True, on_delete=models.CASCADE, related_name="holds"
    )
    held_at = models.DateTimeField()
    release_after = models.DateTimeField()
    released_at = models.DateTimeField(null=True, blank=True)
    excluded_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=200, blank=True)
    notified_at = models.DateTimeField(
        null=True, blank=True, help_text="When the merchant was told (loops: one email a batch)."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "subject_kind", "subject", "meter"],
                condition=Q(released_at__isnull=True, excluded_at__isnull=True),
                name="hold_active_once",
            ),
        ]
        indexes = [
            models.Index(fields=["account", "subject"], name="hold_subject_idx"),
            models.Index(
                fields=["release_after"],
                name="hold_active_idx",
                condition=Q(released_at__isnull=True, excluded_at__isnull=True),
            ),
        ]

    @property
    def is_active(self) -> bool:
        return self.released_at is None and self.excluded_at is None

    def __str__(self) -> str:
        return f"{self.kind} {self.subject} {self.meter or 'all meters'}"


class Feature(models.TextChoices):
    CONVERT_CAMPAIGNS = "convert_campaigns", "Convert campaigns"
    AI_AGENTS = "ai_agents", "AI agents"
    HELPDESK = "helpdesk"


class Entitlement(models.Model):
    """A feature the account may use right now. No row means `active`.

    Paused by limits (C2: Convert's hard cap; Z9: AI at its limit) until `until`, the end of the
    period; suspended by payments (F4).
    """

    class State(models.TextChoices):
        ACTIVE = "active"
        PAUSED = "paused"
        SUSPENDED = "suspended"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="entitlements")
    feature = models.CharField(max_length=20, choices=Feature.choices)
    state = models.CharField(max_length=10, choices=State.choices, default=State.ACTIVE)
    until = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "feature"], name="entitlement_once"),
        ]

    def __str__(self) -> str:
        return f"{self.account.slug} {self.feature}: {self.state}"


class UsageDay(models.Model):
    """Counted units per account, usage period, meter, UTC day (of `billable_at`) and status:
    what the Usage page and its chart read, O(days) rows instead of O(units).

    Kept exact by database triggers on `metering_charge` (migration 0003): every statement that
    inserts, deletes or updates charge rows appends its net change here, in the same
    transaction, whichever code path wrote them (re-evaluation, caps, tests). Append-only, so
    concurrent writers never wait on one hot counter row; `usage_days_fold` merges a key's rows
    into one from time to time. A key's units are always the SUM of its rows.
    """

    # No database constraint: derived rows, written by triggers while charges are deleted.
    account = models.ForeignKey(
        Account, on_delete=models.DO_NOTHING, db_index=False, db_constraint=False
    )
    period_start = models.DateTimeField()
    meter = models.CharField(max_length=32, choices=Meter.choices)
    day = models.DateField()
    status = models.CharField(max_length=12, choices=ChargeStatus.choices)
    units = models.BigIntegerField()
    # False on the rows the triggers append; `usage_days_fold` folds only keys that have one.
    folded = models.BooleanField(db_default=False)

    class Meta:
        indexes = [
            models.Index(fields=["account", "period_start", "meter"], name="usageday_period_idx"),
            models.Index(fields=["id"], name="usageday_unfolded_idx", condition=Q(folded=False)),
            # The spike guard's look at the last days, across accounts (billing.spike_guard).
            models.Index(fields=["day"], name="usageday_day_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.meter} {self.day} {self.status}: {self.units:+}"


class ArchivedPartition(models.Model):
    """A month of events or charges detached from its table and written to a file
    (`manage.py partitions archive`): what was archived, where, and how to check the file."""

    table = models.CharField(max_length=40, help_text="metering_event or metering_charge")
    month = models.DateField(help_text="The first day of the month archived (UTC).")
    rows = models.BigIntegerField()
    path = models.CharField(max_length=500)
    sha256 = models.CharField(max_length=64)
    archived_at = models.DateTimeField()
    restored_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["table", "month"], name="archive_once_per_month"),
        ]

    def __str__(self) -> str:
        return f"{self.table} {self.month:%Y-%m}: {self.rows} rows"


class EventSpan(models.Model):
    """When a subject's events begin: the earliest `received_at` among them.

    Re-evaluation reads a subject's events from that month's partition on: a ticket's events
    may lie in any month after its first, so without it every month was probed for every
    subject (28 index probes a subject with two years kept). On PostgreSQL a trigger on
    `metering_event` keeps it, whatever writes the events; it only ever moves earlier, and a
    subject without a row is read in every month. The SQLite demo keeps no spans.

    Charge rows need no table of their own: they are read once the events are, and none lies
    in a usage period that ends before the subject's first event (metering.services)."""

    pk = models.CompositePrimaryKey("account_id", "kind", "subject")
    account_id = models.BigIntegerField()  # no foreign key: a lower bound, never a fact to show
    kind = models.CharField(max_length=16, choices=SubjectKind.choices)
    subject = models.CharField(max_length=255)
    since = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.kind} {self.subject} since {self.since:%Y-%m-%d}"


class PeriodTally(models.Model):
    """An account's final units per meter in one usage period, as last counted from its charge
    rows, and whether they may have changed since (`stale`).

    What lets a close skip counting again the earlier periods whose late usage it bills (F6:
    the last twelve closes) when nothing changed in them: the close counts a period's charges
    when its tally is missing or stale and writes the tally back (billing.closing.tallies);
    the per-day counters' fold (metering.event_store.fold_usage_days) marks stale the periods
    of every key it folds, in the statement that folds them. Every change to a period's final
    units appends a counter row (the triggers on metering_charge) that a fold takes, and the
    closes fold before they start (billing.closing.close_all): a change is counted by the
    next close after the fold that saw it. Every closed period has one: a trigger on the
    closes' inserts makes a stale one where none is (billing migration 0017), so a close
    finds the earlier periods it must look at again among the stale ones alone, and leaves
    the rest of the history unread. PostgreSQL only: the SQLite demo counts every period
    each time."""

    pk = models.CompositePrimaryKey("account_id", "period_start")
    account_id = models.BigIntegerField()  # no foreign key: derived rows, like UsageDay's
    period_start = models.DateTimeField()
    units = models.JSONField(null=True, help_text="Final units per meter; null: not counted.")
    stale = models.BooleanField(db_default=True)

    class Meta:
        indexes = [
            # The periods a close must look at again (billing.closing.tallies.periods_moved).
            models.Index(
                fields=["account_id", "period_start"],
                condition=models.Q(stale=True) | models.Q(units__isnull=True),
                name="periodtally_moved_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.period_start:%Y-%m-%d}: {self.units}"

"""Units held for review by the spike guard (billing.spike_guard, metering.holds): the banner of
every tab, the Usage tab's "Held for review" card, what "Why was this billed?" says of a held
ticket."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime

from django.db.models import Count

from accounts.models import Account
from metering import selectors as metering
from metering.models import AnomalyStatus, SubjectKind, UsageAnomaly, UsageHold
from plans.meters import meter_heading, meter_label
from plans.models import Subscription

# Loop groups show this many of their tickets (linking to Why); the count says the rest.
TICKETS_SHOWN = 5
# Decisions listed under the card, newest first.
DECIDED_SHOWN = 20


def spike_words(anomaly: UsageAnomaly) -> str:
    """ "412 helpdesk tickets on Tue 24 Nov, against a usual 40 on Tuesdays"."""
    return (
        f"{anomaly.observed:,} {meter_label(anomaly.meter).lower()} on {anomaly.day:%a %-d %b}, "
        f"against a usual {anomaly.baseline:,} on {anomaly.day:%A}s"
    )


def _release_on(at: datetime) -> date:
    return at.astimezone(UTC).date()


@dataclass(frozen=True)
class HeldBanner:
    words: str
    level: str  # "warn": held, waiting for the merchant; "info": told and billed (alert only)


def held_banners(
    *, account: Account, subscription: Subscription | None, now: datetime
) -> list[HeldBanner]:
    """The banners of every tab: each open spike and the loop holds waiting (held, not
    billed), then the alert-only spikes of the current period (billed, as the settings say).
    Two queries."""
    if subscription is not None:
        start, _ = metering.usage_period(subscription=subscription, month=None, now=now)
        since = start.astimezone(UTC).date()
    else:
        since = now.astimezone(UTC).date()
    anomalies = UsageAnomaly.objects.filter(account=account).order_by("day", "meter")
    banners = []
    alerted = []
    for anomaly in anomalies.filter(status__in=(AnomalyStatus.OPEN, AnomalyStatus.ALERTED)):
        if anomaly.status == AnomalyStatus.OPEN:
            banners.append(
                HeldBanner(
                    f"{spike_words(anomaly)}: {anomaly.held:,} are held for review, not billed.",
                    "warn",
                )
            )
        elif anomaly.day >= since:
            alerted.append(
                HeldBanner(
                    f"{spike_words(anomaly)}: billed, as your settings say (alert only).", "info"
                )
            )
    looping = UsageHold.objects.filter(
        account=account,
        kind=UsageHold.Kind.LOOP,
        released_at__isnull=True,
        excluded_at__isnull=True,
    ).count()
    if looping:
        s = "s" if looping != 1 else ""
        verb = "are" if looping != 1 else "is"
        banners.append(
            HeldBanner(
                f"{looping:,} ticket{s} of a suspected loop {verb} held for review, not billed.",
                "warn",
            )
        )
    return banners + alerted


@dataclass(frozen=True)
class AnomalyRow:
    pk: int
    meter: str  # "Helpdesk tickets"
    day: date
    observed: int
    baseline: int
    weeks: int
    held: int
    release_on: date | None  # released by itself that day unless someone decides
    words: str


@dataclass(frozen=True)
class LoopGroup:
    key: int  # the oldest hold's id: the group is every active loop hold with its reason
    reason: str
    count: int
    tickets: list[str]  # the first TICKETS_SHOWN
    held_at: datetime
    release_on: date


@dataclass(frozen=True)
class Decided:
    what: str  # "Spike: 412 helpdesk tickets on Tue 24 Nov…" or "Suspected loop: …"
    count: int
    released: bool  # billed; else excluded (never billed)
    by: str
    at: datetime


@dataclass(frozen=True)
class HeldUsage:
    anomalies: list[AnomalyRow]
    loops: list[LoopGroup]
    decided: list[Decided]

    @property
    def waiting(self) -> bool:
        return bool(self.anomalies or self.loops)


def held_usage(*, account: Account) -> HeldUsage:
    """The Usage tab's card: open spikes, loop holds grouped by reason (oldest first), and
    the last decisions."""
    open_anomalies = list(
        UsageAnomaly.objects.filter(account=account, status=AnomalyStatus.OPEN).order_by(
            "day", "meter"
        )
    )
    first_release: dict[int, datetime] = {}
    for anomaly_id, release_after in (
        UsageHold.objects.filter(
            anomaly__in=open_anomalies, released_at__isnull=True, excluded_at__isnull=True
        )
        .order_by("release_after")
        .values_list("anomaly_id", "release_after")
    ):
        first_release.setdefault(anomaly_id, release_after)
    anomalies = [
        AnomalyRow(
            pk=a.pk,
            meter=meter_heading(a.meter),
            day=a.day,
            observed=a.observed,
            baseline=a.baseline,
            weeks=a.weeks,
            held=a.held,
            release_on=_release_on(first_release[a.pk]) if a.pk in first_release else None,
            words=spike_words(a),
        )
        for a in open_anomalies
    ]
    groups: dict[str, list[UsageHold]] = defaultdict(list)
    for hold in UsageHold.objects.filter(
        account=account,
        kind=UsageHold.Kind.LOOP,
        released_at__isnull=True,
        excluded_at__isnull=True,
    ).order_by("held_at", "pk"):
        groups[hold.reason].append(hold)
    loops = [
        LoopGroup(
            key=rows[0].pk,
            reason=reason,
            count=len(rows),
            tickets=[h.subject for h in rows[:TICKETS_SHOWN]],
            held_at=rows[0].held_at,
            release_on=_release_on(min(h.release_after for h in rows)),
        )
        for reason, rows in groups.items()
    ]
    loops.sort(key=lambda g: (g.held_at, g.key))
    return HeldUsage(anomalies=anomalies, loops=loops, decided=_decided(account))


def _decided(account: Account) -> list[Decided]:
    """Spikes decided, and loop holds decided together (one decision: one reason, one person,
    one moment), newest first."""
    spikes = list(
        UsageAnomaly.objects.filter(
            account=account,
            status__in=(AnomalyStatus.RELEASED, AnomalyStatus.EXCLUDED),
            resolved_at__isnull=False,
        ).order_by("-resolved_at")[:DECIDED_SHOWN]
    )
    counts = dict(
        UsageHold.objects.filter(anomaly__in=spikes)
        .values("anomaly_id")
        .annotate(n=Count("pk"))
        .values_list("anomaly_id", "n")
    )
    rows = [
        Decided(
            what=f"Spike: {spike_words(a)}",
            count=counts.get(a.pk, 0),
            released=a.status == AnomalyStatus.RELEASED,
            by=a.resolved_by,
            at=a.resolved_at or a.opened_at,  # resolved: never None here
        )
        for a in spikes
    ]
    loops: dict[tuple, int] = defaultdict(int)
    decided_loops = (
        UsageHold.objects.filter(account=account, kind=UsageHold.Kind.LOOP)
        .exclude(released_at__isnull=True, excluded_at__isnull=True)
        .values_list("reason", "released_at", "excluded_at", "resolved_by")
    )
    for reason, released_at, excluded_at, by in decided_loops:
        loops[(reason, released_at is not None, released_at or excluded_at, by)] += 1
    rows += [
        Decided(what=reason, count=n, released=released, by=by, at=at)
        for (reason, released, at, by), n in loops.items()
    ]
    rows.sort(key=lambda d: d.at, reverse=True)
    return rows[:DECIDED_SHOWN]


@dataclass(frozen=True)
class TicketHold:
    """A hold of one ticket as the Why page says it."""

    active: bool
    released: bool
    reason: str
    release_on: date
    decided_at: datetime | None
    by: str


def ticket_holds(*, account: Account, ticket: str) -> list[TicketHold]:
    """The ticket's holds (a loop's, or a spike's on one meter), newest first."""
    return [
        TicketHold(
            active=h.is_active,
            released=h.released_at is not None,
            reason=h.reason,
            release_on=_release_on(h.release_after),
            decided_at=h.released_at or h.excluded_at,
            by=h.resolved_by,
        )
        for h in UsageHold.objects.filter(
            account=account, subject_kind=SubjectKind.TICKET, subject=ticket
        ).order_by("-held_at", "-pk")
    ]

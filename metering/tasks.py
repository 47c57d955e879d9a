"""Celery tasks of metering: thin, id-free, safe to run twice or concurrently."""

from celery import shared_task
from django.utils import timezone

from . import services


@shared_task(name="metering.reevaluate_pending")
def reevaluate_pending_task() -> int:
    """Drain the re-evaluation queue in batches; concurrent workers claim disjoint batches.
    First says it is no longer queued, so that later ingests queue another
    (services._enqueue_reevaluation)."""
    return services.reevaluate_queued()


@shared_task(name="metering.finalize_windows")
def finalize_windows_task() -> int:
    """Periodic: pending windows that closed become final, the per-day usage counters are
    folded, expired pauses lift (services.metering_tick, as run_billing does)."""
    return services.metering_tick(as_of=timezone.now())


@shared_task(name="metering.partitions_maintain")
def partitions_maintain_task() -> list[str]:
    """Periodic (daily): month partitions created ahead, old ones archived past the retention."""
    from . import partitions

    if not partitions.is_partitioned("metering_event"):
        return []  # the SQLite demo has plain tables
    return partitions.partitions_maintain()

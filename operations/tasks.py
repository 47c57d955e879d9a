from celery import shared_task
from django.utils import timezone

from .models import Heartbeat

SCHEDULER = "scheduler"


@shared_task(name="operations.heartbeat")
def heartbeat_task() -> None:
    """Scheduled every minute: proves that beat schedules and that a worker runs what it sends."""
    Heartbeat.objects.update_or_create(name=SCHEDULER, defaults={"beat_at": timezone.now()})

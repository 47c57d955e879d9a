"""Celery tasks of accounts: thin, safe to run twice or concurrently."""

from celery import shared_task
from django.utils import timezone

from . import services


@shared_task(name="accounts.login_records_prune")
def login_records_prune_task() -> int:
    """Periodic (daily): logins older than services.LOGIN_HISTORY_KEPT forgotten."""
    return services.login_records_prune(now=timezone.now())

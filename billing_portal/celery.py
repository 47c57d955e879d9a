"""The Celery application.

With no CELERY_BROKER_URL (the embedded demo defaults) tasks run eagerly, in-process; with a
broker they go to workers. Beat runs once per deployment (see docs/operations.md).
"""

import os

from celery import Celery, bootsteps
from celery.signals import task_failure, task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_portal.settings")

app = Celery("billing_portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class RefuseToStart(bootsteps.Step):
    """A worker exits (status 1) without DEBUG and with a weak SECRET_KEY, or with the seller's
    tax settings incomplete or malformed. A bootstep, not a `worker_init` receiver: Celery only
    logs a receiver's exception and the worker went on to consume. Steps are built while the
    worker is constructed, before the pool starts or the broker is asked for anything."""

    def __init__(self, parent, **kwargs) -> None:
        from billing_portal.startup import exit_on_incomplete_seller, exit_on_insecure_secret_key

        exit_on_insecure_secret_key()
        exit_on_incomplete_seller()  # sets Django up if Celery's fix-up has not yet
        super().__init__(parent, **kwargs)


app.steps["worker"].add(RefuseToStart)


@task_failure.connect
def _count_task_failure(sender=None, **kwargs) -> None:
    from operations.metrics import TASK_FAILURES

    TASK_FAILURES.labels(getattr(sender, "name", "unknown")).inc()


@task_prerun.connect
def _bind_task_context(sender=None, task_id=None, args=None, kwargs=None, **extra) -> None:
    from billing_portal.logs import task_context_bind

    task_context_bind(task=sender, task_id=task_id, args=args, kwargs=kwargs)


@task_postrun.connect
def _clear_task_context(**kwargs) -> None:
    import structlog

    structlog.contextvars.clear_contextvars()

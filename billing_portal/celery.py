"""The Celery application.

With no CELERY_BROKER_URL (the embedded demo defaults) tasks run eagerly, in-process; with a
broker they go to workers. Beat runs once per deployment (see docs/operations.md).
"""

import os

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_portal.settings")

app = Celery("billing_portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _refuse_insecure_secret_key(**kwargs) -> None:
    from billing_portal.startup import refuse_insecure_secret_key

    refuse_insecure_secret_key()

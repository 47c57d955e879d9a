"""The demo's scheduler: the beat schedule of the settings, run in this process.

The demo has no broker, so its tasks run in-process; this loop plays beat's part and runs each
periodic task when it is due (closes, collection, retries, reminders, pending windows). Production
runs `celery beat` and workers instead (docs/operations.md).
"""

import logging
import time
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from billing_portal.celery import app

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run the periodic tasks of CELERY_BEAT_SCHEDULE in-process, each when it is due."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--once", action="store_true", help="Run every periodic task once, then stop."
        )

    def handle(self, *args: Any, once: bool = False, **options: Any) -> None:
        if not settings.CELERY_TASK_ALWAYS_EAGER:
            raise CommandError(
                "A broker is configured: run `celery beat` and workers, not the demo scheduler."
            )
        app.loader.import_default_modules()
        schedule = settings.CELERY_BEAT_SCHEDULE
        last_run: dict[str, float] = {}
        while True:
            for name, entry in schedule.items():
                started = time.monotonic()
                if name in last_run and started - last_run[name] < float(entry["schedule"]):
                    continue
                last_run[name] = started
                try:
                    app.tasks[entry["task"]].apply(throw=True)
                except Exception:
                    # One failing task must not stop the others; the next round retries it.
                    log.exception("Periodic task %s failed", entry["task"])
            if once:
                return
            time.sleep(5)

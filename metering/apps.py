from django.apps import AppConfig


class MeteringConfig(AppConfig):
    name = "metering"

    def ready(self) -> None:
        # Registers metering's tasks with the Celery app in every process (web, worker, command),
        # so that services can queue them by name: services never import tasks, tasks import
        # services.
        from . import tasks  # noqa: F401

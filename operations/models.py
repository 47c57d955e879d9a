from django.db import models


class Heartbeat(models.Model):
    """The last time a periodic job ran, one row per job: `/readyz` reads it to tell whether
    the scheduler (beat, or the demo's scheduler) and a worker to run its tasks are alive."""

    name = models.CharField(max_length=64, unique=True)
    beat_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} at {self.beat_at:%Y-%m-%d %H:%M:%S}"

"""The demo's clock: the real time moved forward by an offset kept in a file.

`make demo-advance DAYS=31` adds to the offset so that a newcomer can watch a period end, an
invoice be issued and paid, without waiting a month. Every process of the demo (the web server,
the scheduler, each `manage.py` command) reads the same file, so they agree on what "now" is.

Installed only by the settings of a DEBUG demo with DEMO_CLOCK_FILE set; never in production.
The portal reads time only through `django.utils.timezone.now()`, so replacing that one function
moves every part of it (periods, dunning schedules, `auto_now` fields).
"""

import time
from datetime import datetime, timedelta
from pathlib import Path

from django.utils import timezone

# Re-reading the file on every call would cost a stat per timestamp on the ingest path; once a
# second is soon enough for a person pressing "advance".
_REFRESH_SECONDS = 1.0


def offset_read(path: Path) -> timedelta:
    """The offset stored in `path` (seconds as text); zero when there is none yet."""
    try:
        return timedelta(seconds=float(path.read_text().strip() or 0))
    except FileNotFoundError:
        return timedelta(0)


def offset_write(path: Path, offset: timedelta) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{offset.total_seconds():.0f}\n")
    tmp.replace(path)  # another process never reads half a number


def install(path: Path) -> None:
    """Make `timezone.now()` answer the real time plus the offset in `path`."""
    real_now = timezone.now
    offset = offset_read(path)
    read_at = time.monotonic()

    def now() -> datetime:
        # The file is read again now and then, so that `demo_advance` run in another process
        # moves this one's clock too.
        nonlocal offset, read_at
        if time.monotonic() - read_at > _REFRESH_SECONDS:
            offset = offset_read(path)
            read_at = time.monotonic()
        return real_now() + offset

    now.real_now = real_now  # type: ignore[attr-defined]
    timezone.now = now

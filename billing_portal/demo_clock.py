"""The demo's clock: the real time moved forward by an offset kept in a file.

`make demo-advance DAYS=31` adds to the offset so that a newcomer can watch a period end, an
invoice be issued and paid, without waiting a month. Every process of the demo (the web server,
the scheduler, each `manage.py` command) reads the same file, so they agree on what "now" is.

Installed only by the settings of a DEBUG demo with DEMO_CLOCK_FILE set; never in production.
The portal reads time only through `django.utils.timezone.now()`, so replacing that one function
moves every part of it (periods, dunning schedules, `auto_now` fields). What must keep real time
(how long a login lasts: the browser counts its cookie's age in real time) asks for it inside
`real_time()`.
"""

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from django.utils import timezone

# Re-reading the file on every call would cost a stat per timestamp on the ingest path; once a
# second is soon enough for a person pressing "advance".
_REFRESH_SECONDS = 1.0

# Per thread: the web server answers requests in threads, and one request reading its session
# in real time must not move another's clock.
_local = threading.local()


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


def real_now() -> datetime:
    """The wall clock, whatever the demo's clock says."""
    now: Callable[[], datetime] = getattr(timezone.now, "real_now", timezone.now)
    return now()


def install(path: Path) -> None:
    """Make `timezone.now()` answer the real time plus the offset in `path`.

    Installing again (`demo_advance` does, to read its new offset at once) replaces the clock
    installed before: it wraps the real time, never the moved one, so the offset counts once.
    """
    real = getattr(timezone.now, "real_now", timezone.now)
    offset = offset_read(path)
    read_at = time.monotonic()

    def now() -> datetime:
        if getattr(_local, "real_time", 0):
            return real()
        # The file is read again now and then, so that `demo_advance` run in another process
        # moves this one's clock too.
        nonlocal offset, read_at
        if time.monotonic() - read_at > _REFRESH_SECONDS:
            offset = offset_read(path)
            read_at = time.monotonic()
        return real() + offset

    now.real_now = real  # type: ignore[attr-defined]
    timezone.now = now


def uninstall() -> None:
    """Back to the real time (the tests' way out)."""
    timezone.now = getattr(timezone.now, "real_now", timezone.now)


@contextmanager
def real_time() -> Iterator[None]:
    """Within this block, `timezone.now()` answers the wall clock in this thread."""
    _local.real_time = getattr(_local, "real_time", 0) + 1
    try:
        yield
    finally:
        _local.real_time -= 1

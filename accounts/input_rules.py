"""What the portal accepts at its edge, whoever types it (pure module: no Django import).

Two rules every API serializer, page form, management command and the event ingest share, so
that one field never accepts what another refuses (docs/api.md, "Input at the edge"):

- **Dates** fall in one window: from 2000-01-01T00:00:00Z (no helpdesk of ours predates it,
  and calendar maths near year 1 overflows) to five years ahead of now. A field narrows it
  where its meaning does: an event may be stamped at most `MAX_CLOCK_SKEW` ahead of our clock,
  a migrated cycle's `period_start` not after now.
- **Text** that people read back (names, companies, addresses, reasons) holds no control,
  bidirectional or invisible format character: each could make a name print as another one
  (U+202E makes "invoice<U+202E>fdp.exe" read "invoiceexe.pdf"), hide part of it, or drive a
  terminal (ANSI escapes start with ESC). Multi-line fields may hold line breaks and tabs.
"""

import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
# Clocks drift: an event stamped more than this ahead of ours is a sender's bug, not usage.
MAX_CLOCK_SKEW = timedelta(hours=1)
# The furthest ahead any date given to us may be (a key's expiry, a reconciliation's end).
MAX_AHEAD = timedelta(days=5 * 365 + 1)


@dataclass(frozen=True, slots=True)
class Window:
    """[EARLIEST, now + ahead]: both ends included. `until` says the upper end in words."""

    ahead: timedelta
    until: str

    def latest(self, now: datetime) -> datetime:
        return now + self.ahead

    def describe(self) -> str:
        return f"from {EARLIEST:%Y-%m-%dT%H:%M:%SZ} to {self.until}"

    def problem(self, value: datetime, *, now: datetime) -> str | None:
        """Why an aware `value` is outside the window, in words naming the window; or None."""
        try:
            if EARLIEST <= value <= self.latest(now):
                return None
            side = "before" if value < EARLIEST else "after"
        except OverflowError:  # 9999-12-31T23:59:59-01:00 is past year 9999 in UTC
            side = "after"
        return f"{stamp(value)} is {side} the accepted window: {self.describe()}."

    def day_problem(self, value: date, *, now: datetime) -> str | None:
        """The same for a calendar date, read as the start of that day in UTC."""
        return self.problem(datetime.combine(value, time.min, tzinfo=UTC), now=now)


ANY_DATE = Window(MAX_AHEAD, "five years from now")
NOT_FUTURE = Window(timedelta(0), "now")
EVENT_TIME = Window(MAX_CLOCK_SKEW, "one hour ahead of our clock")


def stamp(value: datetime) -> str:
    """RFC 3339 in UTC, to the second (as error messages quote it)."""
    try:
        return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    except OverflowError:
        return value.isoformat(timespec="seconds")


# Unicode categories refused in text: Cc control characters (C0, DEL, C1: NUL and ESC among
# them), Cf format characters (bidi embeddings, overrides and isolates U+202A–U+202E and
# U+2066–U+2069, the marks U+200E/U+200F, zero-width U+200B–U+200D, the BOM U+FEFF, soft hyphen,
# tags), Cs lone surrogates, and the line and paragraph separators U+2028/U+2029.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# In a multi-line field: line feed and tab, and a carriage return that ends a line (browsers
# send a textarea's line breaks as CR LF). A lone CR rewrites a terminal's line: refused.
_MULTI_LINE = frozenset("\n\t")


def text_problem(value: str, *, multi_line: bool = False) -> str | None:
    """Why `value` cannot be stored as text people read, naming the first character at fault
    as U+XXXX; or None. Plain printable ASCII (most names) is accepted without a scan."""
    if value.isascii() and value.isprintable():
        return None
    for position, char in enumerate(value):
        if unicodedata.category(char) not in _REFUSED_CATEGORIES:
            continue
        if multi_line and (
            char in _MULTI_LINE or (char == "\r" and value[position + 1 : position + 2] == "\n")
        ):
            continue
        allowed = " (line breaks and tabs are)" if multi_line else ""
        return (
            f"Holds {describe_char(char)} at position {position + 1}: control, bidirectional "
            f"and invisible formatting characters are not accepted{allowed}."
        )
    return None


def describe_char(char: str) -> str:
    """e.g. 'U+202E (RIGHT-TO-LEFT OVERRIDE)'; control characters have no Unicode name."""
    name = unicodedata.name(char, "") or {
        "Cc": "a control character",
        "Cs": "a lone surrogate",
    }.get(unicodedata.category(char), "unnamed")
    return f"U+{ord(char):04X} ({name})"

"""How long to wait before trying again: the one backoff helper (pure; no Django import).

The lowest layer of the import contract, so that every app may use it, the outbox included.
Each caller keeps its own schedule's numbers beside the code that uses them (they are product
decisions, documented with it); this module only answers "how long before try n". Three
shapes:

- `Table`: a fixed wait per try, the last one repeating for ever (webhook processing, a
  subscription set aside by the close);
- `FiniteTable`: a fixed wait per try and then no more tries (dunning's retry and reminder
  days);
- `Exponential`: `first`, doubled after every failure, never above `cap`, optionally jittered.

`n` counts from 1: the wait before the first retry (after the first failure) is `wait(1)`.
What a wait is counted from is the caller's choice: the last failure for most of them, the first
failure for dunning, whose days are a calendar (retry 3 on day 4, whatever happened on day 2).
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from random import Random

_MICROSECOND = timedelta(microseconds=1)
# Used when a jittered schedule is asked without a generator of the caller's (tests pass one).
_RANDOM = Random()  # spreading retries out, not a secret: no need for `secrets`


def _check_n(n: int) -> None:
    if n < 1:
        raise ValueError(f"tries are counted from 1, got {n}")


def _check_waits(waits: tuple[timedelta, ...]) -> None:
    if not waits:
        raise ValueError("a table of waits needs at least one wait")
    if any(wait <= timedelta(0) for wait in waits):
        raise ValueError(f"every wait must be longer than zero, got {waits}")


@dataclass(frozen=True)
class Table:
    """One wait per try; after the last one, the last wait again, for ever."""

    waits: tuple[timedelta, ...]

    def __post_init__(self) -> None:
        _check_waits(self.waits)

    def wait(self, n: int) -> timedelta:
        _check_n(n)
        return self.waits[min(n, len(self.waits)) - 1]


@dataclass(frozen=True)
class FiniteTable:
    """One wait per try, and no try after the last one (`wait` answers None)."""

    waits: tuple[timedelta, ...]

    def __post_init__(self) -> None:
        _check_waits(self.waits)

    def wait(self, n: int) -> timedelta | None:
        _check_n(n)
        return self.waits[n - 1] if n <= len(self.waits) else None

    def waits_from(self, n: int) -> Iterator[timedelta]:
        """The waits of try n and of every try after it, to show what is still to come."""
        _check_n(n)
        yield from self.waits[n - 1 :]


@dataclass(frozen=True)
class Exponential:
    """`first`, then twice the previous wait, up to `cap`. With `jitter_percent`, each wait is
    drawn between that share below the plain wait and the plain wait itself: rows that failed
    together (one outage) then come back spread out, and never later than the plain schedule."""

    first: timedelta
    cap: timedelta
    jitter_percent: int = 0

    def __post_init__(self) -> None:
        if self.first <= timedelta(0):
            raise ValueError(f"the first wait must be longer than zero, got {self.first}")
        if self.cap < self.first:
            raise ValueError(f"the cap {self.cap} is shorter than the first wait {self.first}")
        if not 0 <= self.jitter_percent <= 100:
            raise ValueError(f"jitter is a percentage from 0 to 100, got {self.jitter_percent}")

    def wait(self, n: int, *, rng: Random | None = None) -> timedelta:
        _check_n(n)
        plain = self.first
        # Doubling stops at the cap: 2 ** n itself would overflow timedelta for a large n.
        for _ in range(n - 1):
            if plain >= self.cap:
                break
            plain *= 2
        plain = min(plain, self.cap)
        if not self.jitter_percent:
            return plain
        # In whole microseconds, so that the bounds hold exactly (no float rounding).
        top = plain // _MICROSECOND
        bottom = top - top * self.jitter_percent // 100
        return (rng or _RANDOM).randint(bottom, top) * _MICROSECOND

"""Convert campaign clicks (`convert_clicks`, rule C1): at most 3 billable clicks per session."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from .timeline import canonical, require_aware
from .types import (
    BROWSER_SESSION,
    CAMPAIGN_CLICK,
    CONVERT_CLICKS,
    FINAL,
    NOT_COUNTED,
    Event,
    Outcome,
)

# C1 Decision: the cap is per browser session across all campaigns.
CLICKS_PER_SESSION = 3


def evaluate_browser_session(events: Iterable[Event], *, as_of: datetime) -> list[Outcome]:
    """The billable clicks of one browser session, plus one verdict for the clicks beyond 3.

    `as_of` is accepted for a uniform interface: a click is billable at once, with no window.
    """
    require_aware(as_of)
    clicks = canonical(event for event in events if event.type == CAMPAIGN_CLICK)
    if not clicks:
        return []
    sessions = {click.session for click in clicks}
    session = sessions.pop() if len(sessions) == 1 else None
    if session is None:
        # Two sessions evaluated together would share one cap of 3 and under-count.
        raise ValueError(f"the clicks of one browser session name one session, got {sessions}")
    outcomes = [
        Outcome(BROWSER_SESSION, session, CONVERT_CLICKS, n, FINAL, c.occurred_at, None, ("C1",))
        for n, c in enumerate(clicks[:CLICKS_PER_SESSION], start=1)
    ]
    if len(clicks) > CLICKS_PER_SESSION:
        outcomes.append(
            Outcome(BROWSER_SESSION, session, CONVERT_CLICKS, 0, NOT_COUNTED, None, None, ("C1",))
        )
    return sorted(outcomes, key=lambda outcome: outcome.unit)

"""The counter that ingest keeps as events arrive (`portal_events_received` at /metrics).

Kept here, where the events are counted, so that the API does not reach up into operations;
`operations.metrics` serves it with the other figures.
"""

from prometheus_client import Counter

EVENTS = Counter(
    "portal_events_received",
    "Usage events received through the API, by outcome (accepted, duplicate, rejected).",
    ["outcome"],
)


def events_observe(*, accepted: int, duplicates: int, rejected: int) -> None:
    EVENTS.labels("accepted").inc(accepted)
    EVENTS.labels("duplicate").inc(duplicates)
    EVENTS.labels("rejected").inc(rejected)

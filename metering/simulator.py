"""Realistic helpdesk event streams for the demo and the benchmarks (pure; no Django import).

Each scenario is a small story from the rule book (an email answered, a chat reopened after
four days, a comment reply, a voicemail, an AI session, a shopper clicking a pop-up, ...).
A profile weighs the stories: `black_friday` brings more chat, campaigns and SMS. The output
is api.md's wire format, so it goes through the same ingest path as the helpdesk's own stream.
"""

import random
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

Story = Callable[["_Writer"], None]


class _Writer:
    """Collects one subject's events with ids and times, never later than `now`."""

    def __init__(self, rng: random.Random, prefix: str, start: datetime, now: datetime):
        self.rng, self.prefix, self.at, self.now = rng, prefix, start, now
        self.events: list[dict] = []
        self.ticket = f"{prefix}"
        self.customer = f"cust-{rng.randrange(1, 50_000)}"

    def later(self, low: timedelta, high: timedelta) -> None:
        span = int((high - low).total_seconds())
        self.at += low + timedelta(seconds=self.rng.randrange(max(span, 1)))

    def add(self, kind: str, **fields) -> None:
        if self.at > self.now:
            return  # the rest of this story has not happened yet
        event = {
            "id": f"{self.prefix}-{len(self.events)}",
            "type": kind,
            "occurred_at": self.at.isoformat(),
            **fields,
        }
        if kind not in ("campaign_click", "ai_session"):
            event.setdefault("ticket", self.ticket)
            event.setdefault("customer", self.customer)
        self.events.append(event)

    def message(self, author: str, channel: str, **extra) -> None:
        self.add("message", author=author, channel=channel, **extra)


def _email_answered(w: _Writer) -> None:
    w.message("customer", "email")
    w.later(10 * MIN, 6 * HOUR)
    w.message("agent", "email")
    if w.rng.random() < 0.4:
        w.later(HOUR, DAY)
        w.message("customer", "email")
        w.later(10 * MIN, 4 * HOUR)
        w.message("agent", "email")


def _chat_answered(w: _Writer) -> None:
    w.message("customer", "chat")
    w.later(MIN, 10 * MIN)
    w.message("agent", "chat")
    if w.rng.random() < 0.15:  # H6: comes back after more than 72 h: a second billing ticket
        w.later(3 * DAY + HOUR, 6 * DAY)
        w.message("customer", "chat")
        w.later(MIN, 20 * MIN)
        w.message("agent", "chat")


def _chat_campaign(w: _Writer) -> None:
    w.message("customer", "chat", via_campaign=True)  # H7


def _comment_reply(w: _Writer) -> None:
    channel = w.rng.choice(["facebook_comment", "instagram_comment"])
    w.message("customer", channel)
    w.later(30 * MIN, 5 * HOUR)
    w.message("agent", channel)  # H5: not billable


def _note_only(w: _Writer) -> None:
    w.message("customer", "contact_form")
    w.later(MIN, HOUR)
    w.add("internal_note", author="agent")
    w.add("ticket_updated", changes={"tags": ["refund"]})  # H9


def _spam_autoreply(w: _Writer) -> None:
    w.message("customer", "email")
    w.add("ticket_updated", changes={"spam": True})
    w.message("rule", "email")  # H3


def _track_order(w: _Writer) -> None:
    w.add("self_service", action="track_order")  # H8: not billable


def _call(w: _Writer) -> None:
    outcome = w.rng.choices(
        ["answered", "voicemail", "ivr_message_only", "forwarded_external", "missed"],
        weights=[60, 15, 10, 5, 10],
    )[0]
    w.add("call", channel="phone", direction="inbound", outcome=outcome)
    if w.rng.random() < 0.3:
        w.later(HOUR, 2 * DAY)
        w.add("call", channel="phone", direction="outbound", outcome="answered")


def _sms(w: _Writer) -> None:
    w.add("sms", channel="sms", author="customer", direction="inbound")
    w.later(5 * MIN, 2 * HOUR)
    w.add("sms", channel="sms", author="agent", direction="outbound")


def _automation(w: _Writer) -> None:
    feature = w.rng.choice(["flow", "order_management", "article_recommendation", "ai_agent"])
    w.message("customer", "chat")
    w.add("automation", feature=feature, outcome="resolved")
    if w.rng.random() < 0.25:  # A4: the shopper still talks to an agent within 72 h
        w.later(HOUR, DAY)
        w.message("customer", "chat")
        w.later(MIN, HOUR)
        w.message("agent", "chat")


def _campaign_clicks(w: _Writer) -> None:
    session = f"{w.prefix}-browser"
    for _ in range(w.rng.choice([1, 1, 1, 2, 3, 5])):  # C1: at most 3 of these count
        w.add("campaign_click", session=session, campaign=w.rng.choice(["bf-popup", "welcome"]))
        w.later(timedelta(seconds=10), 3 * MIN)


def _ai_session(w: _Writer) -> None:
    base = {"session": f"{w.prefix}-ai", "agent_kind": "messaging"}
    w.add("ai_session", action="started", **base)
    w.later(timedelta(seconds=5), MIN)
    w.add("ai_session", action="reply_sent", **base)
    w.later(MIN, 5 * MIN)
    if w.rng.random() < 0.2:
        w.add("ai_session", action="escalated", to="agent", **base)  # Z4
        return
    w.add("ai_session", action="feedback", value="positive", **base)
    w.add("ai_session", action="evaluation", relevant=True, resolved=True, **base)


PROFILES: dict[str, list[tuple[Story, int]]] = {
    "normal": [
        (_email_answered, 30),
        (_chat_answered, 20),
        (_chat_campaign, 3),
        (_comment_reply, 6),
        (_note_only, 4),
        (_spam_autoreply, 2),
        (_track_order, 4),
        (_call, 8),
        (_sms, 5),
        (_automation, 8),
        (_campaign_clicks, 6),
        (_ai_session, 4),
    ],
    "black_friday": [
        (_email_answered, 20),
        (_chat_answered, 30),
        (_chat_campaign, 10),
        (_comment_reply, 8),
        (_note_only, 2),
        (_spam_autoreply, 2),
        (_track_order, 8),
        (_call, 6),
        (_sms, 10),
        (_automation, 12),
        (_campaign_clicks, 15),
        (_ai_session, 6),
    ],
}


def generate(
    *,
    tickets: int,
    since: datetime,
    now: datetime,
    profile: str = "normal",
    seed: int = 0,
    prefix: str = "sim",
) -> Iterator[dict]:
    """Yield the events of `tickets` stories starting between `since` and `now`."""
    rng = random.Random(seed)  # noqa: S311 - simulated traffic, not security
    stories, weights = zip(*PROFILES[profile], strict=True)
    span = max(int((now - since).total_seconds()), 1)
    for n in range(tickets):
        start = since + timedelta(seconds=rng.randrange(span))
        writer = _Writer(rng, f"{prefix}-{seed}-{n}", start, now)
        rng.choices(stories, weights=weights)[0](writer)
        yield from writer.events

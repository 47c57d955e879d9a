"""Automated resolutions (`automated_resolutions`, rules Z1-Z7): one AI conversation session.

Each agent kind has its own test and its own end of session. Events after the end are
ignored (a session that ended cannot be cancelled any more, so "final" stays final), except
the evaluator's verdict, which by nature arrives at or after the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from .timeline import WINDOW, canonical, ordered_rules, quiet_end, require_aware, window_status
from .types import (
    AI_SESSION,
    AI_SESSION_EVENT,
    AUTOMATED_RESOLUTIONS,
    FINAL,
    NOT_COUNTED,
    Event,
    Outcome,
)

# What neither the user nor the AI did in the conversation: they do not extend a session.
NOT_ACTIVITY = frozenset({"evaluation", "session_closed"})
# Z4 and its relatives: a human took the conversation, so nothing was automated.
HUMAN_TAKEOVER = frozenset({"escalated", "agent_public_reply"})
REPLIES = frozenset({"user_reply", "agent_public_reply"})


@dataclass(frozen=True, slots=True)
class Verdict:
    """Counted when `billable_at` is set; `pending_until` is the end of a still open window."""

    rules: tuple[str, ...]
    billable_at: datetime | None = None
    pending_until: datetime | None = None


def evaluate_ai_session(events: Iterable[Event], *, as_of: datetime) -> list[Outcome]:
    """The session's one automated resolution (Z1), or why there is none; [] without events."""
    require_aware(as_of)
    session_events = canonical(event for event in events if event.type == AI_SESSION_EVENT)
    if not session_events:
        return []
    session = _one_value(session_events, "session", lambda event: event.session)
    kind = _one_value(session_events, "agent_kind", lambda event: event.attr("agent_kind"))
    judge = JUDGES.get(kind)
    if judge is None:
        raise ValueError(f"session {session!r}: unknown agent_kind {kind!r}")
    return [_outcome(session, judge(session_events), as_of)]


def _one_value(events: Sequence[Event], name: str, read: Callable[[Event], str | None]) -> str:
    # Mixing two sessions would count one where Z1 says two; refuse rather than guess.
    values = {value for event in events if (value := read(event)) is not None}
    if len(values) != 1:
        raise ValueError(f"the events of one AI session name exactly one {name}, got {values}")
    return values.pop()


def _outcome(session: str, verdict: Verdict, as_of: datetime) -> Outcome:
    if verdict.billable_at is None:
        return Outcome(
            AI_SESSION, session, AUTOMATED_RESOLUTIONS, 0, NOT_COUNTED, None, None, verdict.rules
        )
    status, pending_until = FINAL, None
    if verdict.pending_until is not None:
        status, pending_until = window_status(verdict.pending_until, as_of)
    return Outcome(
        AI_SESSION,
        session,
        AUTOMATED_RESOLUTIONS,
        1,
        status,
        verdict.billable_at,
        pending_until,
        verdict.rules,
    )


def _action(event: Event) -> str | None:
    # validation.py has made `action` a string wherever the event type has one.
    action: str | None = event.attr("action")
    return action


def _activity(events: Sequence[Event]) -> list[Event]:
    return [event for event in events if _action(event) not in NOT_ACTIVITY]


def _has(events: Iterable[Event], actions: Iterable[str]) -> bool:
    wanted = frozenset(actions)
    return any(_action(event) in wanted for event in events)


def _latest_evaluation(events: Sequence[Event]) -> Event | None:
    # The helpdesk sends one verdict per session; if it re-sends, the newest one wins.
    evaluations = [event for event in events if _action(event) == "evaluation"]
    return evaluations[-1] if evaluations else None


def _session_end(events: Sequence[Event], activity: Sequence[Event]) -> datetime:
    """72 h of inactivity, or `session_closed` (the tab closed, the configured chat timeout)."""
    end = quiet_end(event.occurred_at for event in activity)
    closed = [event.occurred_at for event in events if _action(event) == "session_closed"]
    return min(end, closed[0]) if closed else end


def _counted(rule: str, end: datetime) -> Verdict:
    # Window kinds are established when the window closes undisturbed: billable_at is that
    # instant, and the unit is pending until then.
    return Verdict(ordered_rules(("Z1", rule)), billable_at=end, pending_until=end)


def _messaging(events: Sequence[Event]) -> Verdict:
    """Z2: relevant answer, right last interaction, after 72 h of inactivity."""
    activity = _activity(events)
    if not activity:
        return Verdict(("Z2",))
    # Z2 counts "after 72 h of inactivity" and nothing else; a session_closed is ignored.
    end = quiet_end(event.occurred_at for event in activity)
    in_session = [event for event in activity if event.occurred_at <= end]
    if _has(in_session, HUMAN_TAKEOVER):
        return Verdict(("Z2", "Z4"))
    evaluation = _latest_evaluation(events)
    if evaluation is None or evaluation.attr("relevant") is not True:
        return Verdict(("Z2",))
    if not _z2_last_interaction_counts(in_session, evaluation):
        return Verdict(("Z2",))
    return _counted("Z2", end)


def _z2_last_interaction_counts(in_session: list[Event], evaluation: Event) -> bool:
    interactions = [event for event in in_session if _action(event) != "started"]
    if not interactions:
        return False
    last = interactions[-1]
    action = _action(last)
    if action == "feedback":
        value: object = last.attr("value")
        return value == "positive"
    if action == "flow_completed":
        return True
    if action in ("article_suggested", "article_clicked"):
        # Recommended or flow-step articles need a click; generative answers do not.
        return last.attr("via") == "generative" or _has(interactions, ["article_clicked"])
    # The last word was not feedback: the evaluator's "resolved" decides.
    return evaluation.attr("resolved") is True


def _advanced(events: Sequence[Event], end: datetime) -> Verdict:
    """Z3: a reply was sent, no human took over, and the evaluator's check passed."""
    in_session = [event for event in _activity(events) if event.occurred_at <= end]
    if _has(in_session, HUMAN_TAKEOVER):
        return Verdict(("Z3", "Z4"))
    if not _has(in_session, ["reply_sent"]):
        return Verdict(("Z3",))  # actions or notes alone never count
    evaluation = _latest_evaluation(events)
    passed = (
        evaluation is not None
        and evaluation.attr("resolved") is True
        and evaluation.attr("relevant") is not False
    )
    return _counted("Z3", end) if passed else Verdict(("Z3",))


def _advanced_chat(events: Sequence[Event]) -> Verdict:
    activity = _activity(events)
    if not activity:
        return Verdict(("Z3",))
    return _advanced(events, _session_end(events, activity))


def _advanced_ticket(events: Sequence[Event]) -> Verdict:
    activity = _activity(events)
    if not activity:
        return Verdict(("Z3",))
    # Tickets are evaluated 72 h after the first message, whatever happens in between.
    return _advanced(events, activity[0].occurred_at + WINDOW)


def _autoreply_articles(events: Sequence[Event]) -> Verdict:
    """Z5: "Yes, close my request", or a click within 72 h and no reply (then or at solve)."""
    activity = _activity(events)
    escalations = [e.occurred_at for e in activity if _action(e) == "escalated"]
    # Each way of resolving gives an instant and whether a window is still open; the
    # earliest one that no escalation preceded is the resolution.
    moments: list[tuple[datetime, datetime | None]] = []
    close = next((e for e in activity if _action(e) == "close_request_clicked"), None)
    if close is not None:
        moments.append((close.occurred_at, None))
    suggestion = next((e for e in activity if _action(e) == "article_suggested"), None)
    if suggestion is not None:
        moments += _z5_after_click(activity, suggestion)
    standing = [m for m in moments if not any(x <= m[0] for x in escalations)]
    if not standing:
        return Verdict(("Z4", "Z5") if escalations else ("Z5",))
    billable_at, pending_until = min(standing, key=lambda moment: moment[0])
    return Verdict(ordered_rules(("Z1", "Z5")), billable_at, pending_until)


def _z5_after_click(
    activity: Sequence[Event], suggestion: Event
) -> list[tuple[datetime, datetime | None]]:
    start, end = suggestion.occurred_at, suggestion.occurred_at + WINDOW
    window = [e for e in activity if start <= e.occurred_at <= end and e is not suggestion]
    click = next((e for e in window if _action(e) == "article_clicked"), None)
    if click is None:
        return []
    replies = [e.occurred_at for e in window if _action(e) in REPLIES]
    moments: list[tuple[datetime, datetime | None]] = []
    solved = next(
        (e for e in window if _action(e) == "ticket_solved" and e.occurred_at >= click.occurred_at),
        None,
    )
    if solved is not None and not any(moment <= solved.occurred_at for moment in replies):
        moments.append((solved.occurred_at, None))
    if not replies:
        moments.append((end, end))
    return moments


def _autoreply_triage(events: Sequence[Event]) -> Verdict:
    """Z6: the trigger's auto-reply, then 72 h without a user or public agent reply."""
    activity = _activity(events)
    reply = next((e for e in activity if _action(e) == "reply_sent"), None)
    if reply is None:
        return Verdict(("Z6",))
    end = reply.occurred_at + WINDOW
    if _has((e for e in activity if e.occurred_at <= end), ["escalated"]):
        return Verdict(("Z4", "Z6"))
    window = [e for e in activity if reply.occurred_at < e.occurred_at <= end]
    if _has(window, REPLIES):
        return Verdict(("Z6",))
    return _counted("Z6", end)


def _web_widget(events: Sequence[Event]) -> Verdict:
    """Z7: an article suggested and a preview clicked or positive feedback, nothing negative."""
    activity = _activity(events)
    if not activity:
        return Verdict(("Z7",))
    end = _session_end(events, activity)
    in_session = [event for event in activity if event.occurred_at <= end]
    if _has(in_session, HUMAN_TAKEOVER):
        # Live chat, contact form and call-back are the widget's escalations (Z4 and Z7).
        return Verdict(("Z4", "Z7"))
    negative = any(
        _action(e) == "not_understood"
        or (_action(e) == "feedback" and e.attr("value") == "negative")
        for e in in_session
    )
    positive = any(
        _action(e) == "article_clicked"
        or (_action(e) == "feedback" and e.attr("value") == "positive")
        for e in in_session
    )
    if negative or not positive or not _has(in_session, ["article_suggested"]):
        return Verdict(("Z7",))
    return _counted("Z7", end)


JUDGES: dict[str, Callable[[Sequence[Event]], Verdict]] = {
    "messaging": _messaging,
    "advanced_chat": _advanced_chat,
    "advanced_ticket": _advanced_ticket,
    "autoreply_articles": _autoreply_articles,
    "autoreply_triage": _autoreply_triage,
    "web_widget": _web_widget,
}

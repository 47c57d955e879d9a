"""The one-pass check of an event and orjson's reading of a batch answer exactly as the
field-by-field check and the standard parser do (issue 28): same events accepted, made the same,
same reasons for the rest."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metering import json_codec, simulator, validation
from metering.validation import EventIn

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
PROFILE = settings(max_examples=400, deadline=None)

FIELDS = [
    "id",
    "type",
    "occurred_at",
    "account",
    "ticket",
    "session",
    "customer",
    "channel",
    "author",
    *sorted({name for fields in validation._TYPE_FIELDS.values() for name in fields}),
]
# Values near every edge the checks draw: types, lengths, control characters, characters only
# the long way accepts, timestamps in and out of the window and in other spellings.
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "",
            "T1",
            "x" * 255,
            "x" * 256,
            "a\x00b",
            "tab\there",
            "\x85",
            "\ud800",
            "no\xa0break",
            "é✓ 票",
            "email",
            "customer",
            "agent",
            "inbound",
            "answered",
            "flow",
            "resolved",
            "track_order",
            "messaging",
            "started",
            "positive",
            "2026-11-22T11:00:00Z",
            "2026-11-22T11:00:00+05:30",
            "2026-11-22t11:00:00z",
            "2026-11-22 11:00:00+00:00",
            "2026-11-22T11:00:00",
            "2026-11-22T13:00:00.000001Z",
            "2026-11-22T12:59:59+00:00",
            "1999-12-31T23:59:59Z",
            "9999-12-31T23:59:59-01:00",
            "2026-02-30T00:00:00Z",
            "2026-11-22T11:00:00\x00Z",
        ]
    ),
    st.sampled_from(sorted(validation._TYPE_FIELDS)),
    st.text(max_size=6),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers() | st.text(max_size=3), max_size=3),
    st.just({"a": {"b": {"c": [[1]]}}}),
)


def a_valid_event(kind: str) -> dict:
    """A valid event of `kind`, for hypothesis to spoil."""
    event = {
        "id": "e1",
        "type": kind,
        "occurred_at": "2026-11-22T11:00:00Z",
        "account": "shop",
        "ticket": "T1",
        "session": "S1",
        "customer": "C1",
        "channel": "email",
        "author": "customer",
    }
    for name, (_, rule) in validation._TYPE_FIELDS[kind].items():
        if isinstance(rule, frozenset):
            event[name] = sorted(rule)[0]
        elif rule is bool:
            event[name] = True
        elif rule is str:
            event[name] = "T2"
        else:
            event[name] = {"status": "open"}
    return event


EVENTS = st.builds(
    lambda kind, changes, drop: {
        **{k: v for k, v in a_valid_event(kind).items() if k not in drop},
        **changes,
    },
    st.sampled_from(sorted(validation._TYPE_FIELDS)),
    st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=3),
    st.sets(st.sampled_from(FIELDS), max_size=2),
)


@PROFILE
@given(EVENTS)
def test_the_one_pass_check_answers_as_the_field_by_field_one(raw):
    fast = validation._valid_event(raw, NOW + validation.MAX_CLOCK_SKEW)
    slow = validation._checked_field_by_field(raw, now=NOW)
    if fast is not None:  # it only ever accepts, and what the other accepts
        assert fast == slow and isinstance(slow, EventIn)
    assert validation.validate_event(raw, now=NOW) == slow
    assert validation.validate_events([raw, raw], now=NOW) == [slow, slow]


def test_the_usual_events_take_the_one_pass_check():
    """The simulator's streams (the helpdesk's usual events) never need the long way."""
    events = list(simulator.generate(tickets=200, since=NOW - timedelta(days=10), now=NOW, seed=3))
    for event in events:
        event["account"] = "shop"
        assert validation._valid_event(event, NOW + validation.MAX_CLOCK_SKEW) is not None, event


@pytest.mark.parametrize(
    "text",
    [
        '{"events": [{"id": "e1", "ticket": 12345678901234567890123}]}',  # kept exact
        '{"n": -9223372036854775809}',
        '{"n": 18446744073709551616, "m": 18446744073709551615}',
        '{"s": "\\ud800"}',  # a lone surrogate: read, to be refused event by event
        '{"f": 1e999}',  # infinite: read, to be refused event by event
        '{"a": 1, "a": 2}',
        '{"x": -0.0, "y": 0.1, "z": 1E5, "w": "\\u00e9\\/"}',
        '\t{"events": []}\n',
    ],
)
def test_a_batch_is_read_as_the_standard_parser_reads_it(text):
    expected = json.loads(text)
    got = json_codec.loads(text)
    assert repr(got) == repr(expected)  # repr: 1e+23 is not 10**23, -0.0 is not 0


@pytest.mark.parametrize(
    "text", ['{"a": NaN}', '{"a": Infinity}', '{"a": 1', "\ufeff{}", '{"a": "\x01"}', "[1,]"]
)
def test_what_the_standard_parser_refuses_is_refused(text):
    with pytest.raises(ValueError):
        json.loads(text, parse_constant=json_codec._refuse_constant)
    with pytest.raises(ValueError):
        json_codec.loads(text)


def test_too_deep_for_both_is_a_recursion_error():
    with pytest.raises(RecursionError):
        json_codec.loads("[" * 20_000 + "]" * 20_000)


@pytest.mark.parametrize(
    "value", [{}, {"changes": {"é": ["a\nb", 1.5, None, True]}}, {"big": 10**30}]
)
def test_attrs_are_written_as_json_the_standard_parser_reads_back(value):
    assert json.loads(json_codec.dumps(value)) == value


@pytest.mark.django_db
@pytest.mark.parametrize(
    "text",
    [
        '{"changes": {"\\u00e9": ["a\\nb", 1.5, null, true]}, "n": -0.0}',
        '{"ticket_id": 1234567890123456789012345, "m": 18446744073709551615}',
        '{"x": 1E5, "y": 0.1, "deep": ' + "[" * 500 + "]" * 500 + "}",
    ],
)
def test_stored_attrs_come_back_as_the_standard_parser_reads_them(text):
    """Re-evaluation reads attrs and rules through orjson: a long ticket number stays that
    integer, exactly as the standard parser reads it."""
    from metering.event_store import statement_run

    [(got,)] = statement_run("SELECT %s::jsonb", [text])
    [(as_text,)] = statement_run("SELECT %s::jsonb::text", [text])
    assert repr(got) == repr(json.loads(as_text))


@pytest.mark.django_db
@pytest.mark.parametrize(
    "items",
    [[], ["T-1", "", "é", "🎫 ticket", "a'b\"c{d},e"], [None, "T-2", None], ["x" * 255] * 1000],
)
def test_text_arrays_reach_the_database_as_they_were(items):
    """Ingest binds its text columns with its own binary array writer (issue 28): every item
    comes back the same, empty strings and missing values apart."""
    from metering.event_store import ARRAY_OF, statement_run

    [(back, length)] = statement_run(
        "SELECT %s::text[], cardinality(%s::text[])",
        [ARRAY_OF["text"](items), ARRAY_OF["text"](items)],
    )
    assert (back, length) == (items, len(items))


@pytest.mark.django_db
@pytest.mark.parametrize(
    "items", [[], [1, -1, 0, 2**63 - 1, -(2**63)], [None, 7], list(range(10_000, 11_000))]
)
def test_int8_arrays_reach_the_database_as_they_were(items):
    from metering.event_store import ARRAY_OF, statement_run

    [(back, length)] = statement_run(
        "SELECT %s::int8[], cardinality(%s::int8[])",
        [ARRAY_OF["int8"](items), ARRAY_OF["int8"](items)],
    )
    assert (back, length) == (items, len(items))

"""The input rules themselves (pure): which characters text refuses, the dates window, and the
country codes (issue 22, item 6)."""

from datetime import UTC, date, datetime, timedelta

import pytest

from accounts import countries, input_rules
from accounts.input_rules import ANY_DATE, EARLIEST, EVENT_TIME, NOT_FUTURE, text_problem

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "multi_line", "refused"),
    [
        ("Bloom & Co", False, None),
        ("Ölfabrik Café 東京 مقهى שלום", False, None),
        ("Söhne\u00a0GmbH", False, None),  # a no-break space is a space
        ("💸🧾", False, None),
        ("a\x00b", False, "U+0000"),
        ("\x1b[31mred", False, "U+001B"),
        ("a\x7f", False, "U+007F"),
        ("a\x85", False, "U+0085"),
        ("a\x9b31m", False, "U+009B"),
        ("a\tb", False, "U+0009"),
        ("a\nb", False, "U+000A"),
        ("a\nb\tc\r\nd", True, None),
        ("a\rb", True, "U+000D"),  # a lone CR rewrites a terminal's line
        ("a\x1bb", True, "U+001B"),
        *[(f"x{chr(c)}y", False, f"U+{c:04X}") for c in range(0x202A, 0x202F)],
        *[(f"x{chr(c)}y", False, f"U+{c:04X}") for c in range(0x2066, 0x206A)],
        *[(f"x{chr(c)}y", False, f"U+{c:04X}") for c in range(0x200B, 0x2010)],
        ("x\ufeffy", False, "U+FEFF"),
        ("x\u2028y", True, "U+2028"),
        ("x\U000e0041y", False, "U+E0041"),  # a tag character
        ("\ud800", False, "U+D800"),
    ],
)
def test_text_refuses_control_bidi_and_invisible_characters(value, multi_line, refused):
    problem = text_problem(value, multi_line=multi_line)
    if refused is None:
        assert problem is None
    else:
        assert problem is not None and problem.startswith(f"Holds {refused} (")


def test_the_first_character_at_fault_is_named_with_its_position():
    assert text_problem("ab\u202ec\x1b") == (
        "Holds U+202E (RIGHT-TO-LEFT OVERRIDE) at position 3: control, bidirectional and "
        "invisible formatting characters are not accepted."
    )


@pytest.mark.parametrize(
    ("window", "value", "inside"),
    [
        (ANY_DATE, EARLIEST, True),
        (ANY_DATE, EARLIEST - timedelta(microseconds=1), False),
        (ANY_DATE, NOW + timedelta(days=5 * 365), True),
        (ANY_DATE, NOW + timedelta(days=5 * 366), False),
        (NOT_FUTURE, NOW, True),
        (NOT_FUTURE, NOW + timedelta(seconds=1), False),
        (EVENT_TIME, NOW + timedelta(hours=1), True),
        (EVENT_TIME, NOW + timedelta(hours=1, seconds=1), False),
        (ANY_DATE, datetime(1, 1, 1, tzinfo=UTC), False),
        (ANY_DATE, datetime.fromisoformat("9999-12-31T23:59:59-01:00"), False),
    ],
)
def test_the_dates_window(window, value, inside):
    problem = window.problem(value, now=NOW)
    assert (problem is None) == inside
    if problem:
        assert problem.endswith(f"accepted window: {window.describe()}.")


def test_a_date_is_read_as_the_start_of_its_day_in_utc():
    assert ANY_DATE.day_problem(date(2000, 1, 1), now=NOW) is None
    assert ANY_DATE.day_problem(date(1999, 12, 31), now=NOW) == (
        "1999-12-31T00:00:00Z is before the accepted window: from 2000-01-01T00:00:00Z to five "
        "years from now."
    )
    assert input_rules.stamp(datetime(1, 1, 1, tzinfo=UTC)) == "0001-01-01T00:00:00Z"


def test_countries_are_the_assigned_iso_codes_and_never_a_user_assigned_one():
    assert len(countries.COUNTRY_CODES) == 249
    assert {"FR", "DE", "GR", "SS", "CW", "SX", "BQ", "AX"} <= countries.COUNTRY_CODES
    assert not countries.COUNTRY_CODES & countries.USER_ASSIGNED
    assert {"AA", "QM", "QZ", "XA", "XK", "XZ", "ZZ"} <= countries.USER_ASSIGNED
    assert "QL" not in countries.USER_ASSIGNED
    assert set(countries.EU_VAT_PREFIX) <= countries.COUNTRY_CODES
    assert countries.country_problem("FR") is None

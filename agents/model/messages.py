"""Every reason code and detail text of input validation, in one place.

Validation errors (``ValidationError.reason`` / ``.detail``) and timestamp errors are
read by people (stderr, dead letters) and by machines (the ``reason`` word). A faster
reimplementation of the validation must give the same words and texts, so they are
built here only, and ``tests/test_model.py`` pins them.

Any text that quotes input goes through :func:`excerpt`: a dead letter must stay far
below the broker's message limit whatever the input held (a 600 KB enum value once
made a 1.2 MB dead letter).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Final

MISSING: Final = "missing"
WRONG_TYPE: Final = "wrong_type"
UNKNOWN_ENUM: Final = "unknown_enum"
BAD_TIMESTAMP: Final = "bad_timestamp"
TOO_LONG: Final = "too_long"
TOO_SHORT: Final = "too_short"
CONTROL_CHARACTER: Final = "control_character"

REASONS: Final = frozenset(
    {MISSING, WRONG_TYPE, UNKNOWN_ENUM, BAD_TIMESTAMP, TOO_LONG, TOO_SHORT, CONTROL_CHARACTER}
)
"""The ``reason`` words a :class:`~agents.errors.ValidationError` of an event can carry."""

EXCERPT_CHARS: Final = 64
"""How much of an input value a message quotes."""


def excerpt(value: str, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)``, or the repr of its first ``limit`` characters and its length."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value)} chars)"


def json_type_name(value: object) -> str:
    """The Python type's name, as the messages have always said it (``int``, ``list``)."""
    return type(value).__name__


def missing() -> str:
    return "is required"


def missing_one_of(allowed: Iterable[str]) -> str:
    return f"is required (one of {', '.join(sorted(allowed))})"


def must_be_string(value: object) -> str:
    return f"must be a string, got {json_type_name(value)}"


def must_be_string_or_null(value: object) -> str:
    return f"must be a string or null, got {json_type_name(value)}"


def must_be_timestamp_string(value: object) -> str:
    return f"must be an RFC 3339 string, got {json_type_name(value)}"


def must_be_string_list(value: object) -> str:
    return f"must be a list of strings, got {json_type_name(value)}"


def must_be_object(value: object) -> str:
    return f"an event must be a JSON object, got {json_type_name(value)}"


def entry_must_be_string() -> str:
    return "must be a string"


def too_short(min_len: int) -> str:
    return f"must have at least {min_len} character(s)"


def too_long(length: int, max_len: int) -> str:
    return f"has {length} characters, at most {max_len} allowed"


def too_many_entries(count: int, max_entries: int) -> str:
    return f"has {count} entries, at most {max_entries}"


def unknown_enum(value: str, allowed: Iterable[str]) -> str:
    return f"{excerpt(value)} is not one of {', '.join(sorted(allowed))}"


def type_on_wrong_topic(declared: str, expected: str) -> str:
    return f"{excerpt(declared)} on a {expected} topic"


def type_required() -> str:
    return "is required (deploy, incident or security_flag)"


def _kind_of_character(char: str) -> str:
    category = unicodedata.category(char)
    if category == "Cc":
        return "a control character"
    if category == "Cs":
        return "a lone surrogate"
    if category in ("Zl", "Zp"):
        return "a line or paragraph separator"
    return "an invisible format character"


def control_character_in_name(index: int, char: str) -> str:
    return (
        f"contains {_kind_of_character(char)} (U+{ord(char):04X}) at index {index}; "
        "names may not contain control, format or separator characters"
    )


def control_character_in_text(index: int, char: str) -> str:
    return (
        f"contains a control character (U+{ord(char):04X}) at index {index}; "
        "text may contain tab, line feed and carriage return, no other control characters"
    )


# --- timestamps ----------------------------------------------------------------------


def not_rfc3339(text: str) -> str:
    return (
        f"{excerpt(text)} is not an RFC 3339 timestamp "
        "(expected YYYY-MM-DDTHH:MM:SS[.fraction] and Z or ±hh:mm)"
    )


def timestamp_without_offset(text: str) -> str:
    return f"timestamp {excerpt(text)} has no offset (add 'Z' or '+hh:mm')"


def timestamp_non_ascii(text: str, index: int, char: str) -> str:
    return (
        f"timestamp {excerpt(text)} has the non-ASCII character U+{ord(char):04X} at index "
        f"{index} (RFC 3339 digits are ASCII 0-9)"
    )


def timestamp_bad_offset(text: str) -> str:
    return f"timestamp {excerpt(text)} has an invalid offset (hours 00-23, minutes 00-59)"


def timestamp_bad_field(text: str, problem: str) -> str:
    return f"timestamp {excerpt(text)}: {problem}"


def timestamp_out_of_range(text: str, first: str, last: str) -> str:
    return (
        f"timestamp {excerpt(text)} is outside the instants relsec can represent "
        f"({first} to {last} in UTC)"
    )


def epoch_not_a_number(value: object) -> str:
    return f"epoch time must be a number, got {json_type_name(value)}"


# ``int | float``, not ``float``: compiled by mypyc, a ``float`` parameter converts an int
# to a C double (10**5000 would overflow, and a large int would lose its digits).
def _number_text(value: int | float) -> str:
    # repr() of an int beyond 4300 digits raises; such a number needs no digits quoted.
    if isinstance(value, int) and value.bit_length() > 128:
        return f"(an integer of {value.bit_length()} bits)"
    return repr(value)


def epoch_out_of_range(value: int | float, first: str, last: str) -> str:
    return (
        f"epoch time {_number_text(value)} ms is outside the instants relsec can represent "
        f"({first} to {last} in UTC)"
    )


def instant_out_of_range(ms: int, first: str, last: str) -> str:
    return f"instant {_number_text(ms)} ms is outside {first} to {last}"


# --- durations -----------------------------------------------------------------------


def not_a_duration(text: str) -> str:
    return f"{excerpt(text)} is not a duration (examples: 24h, 90m, 7d, 30s, 1500ms)"


def duration_too_long(text: str, max_text: str) -> str:
    return f"{excerpt(text)} is longer than the longest duration relsec takes ({max_text})"

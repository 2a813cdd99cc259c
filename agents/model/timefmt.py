"""RFC 3339 timestamps <-> UTC epoch milliseconds, and duration strings.

Inside relsec every instant is an ``int`` of UTC epoch milliseconds; text is
parsed once at the edge. Sub-millisecond digits are truncated: two events less
than a millisecond apart are ordered by type rank and ``event_id``.

What the parser accepts (docs/decisions.md, "Input"):

* the RFC 3339 ``date-time`` grammar with ASCII digits only: ``YYYY-MM-DD``, ``T``
  (or ``t`` or a space, as RFC 3339 §5.6 allows), ``HH:MM:SS``, an optional
  fraction of 1 to 9 digits, and ``Z`` / ``z`` or an offset ``±hh:mm`` with hours
  00-23 and minutes 00-59; nothing before or after it (not even a newline);
* a leap second ``:60`` in any minute, read as ``:59.999`` of that minute;
* only instants :func:`format_rfc3339_ms` can write back:
  :data:`MIN_INSTANT_MS` (``0001-01-01T00:00:00Z``) to :data:`MAX_INSTANT_MS`
  (``9999-12-31T23:59:59.999Z``) in UTC. ``0001-01-01T00:00:00+01:00`` is in year 0
  in UTC and is refused, so nothing downstream meets an instant it cannot format.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Final

from agents.model import messages

MS_PER_SECOND: Final = 1_000
MS_PER_MINUTE: Final = 60 * MS_PER_SECOND
MS_PER_HOUR: Final = 60 * MS_PER_MINUTE
MS_PER_DAY: Final = 24 * MS_PER_HOUR

MIN_INSTANT_MS: Final = -62_135_596_800_000
"""``0001-01-01T00:00:00Z``: the first instant relsec parses and formats."""
MAX_INSTANT_MS: Final = 253_402_300_799_999
"""``9999-12-31T23:59:59.999Z``: the last instant relsec parses and formats."""
MIN_INSTANT_TEXT: Final = "0001-01-01T00:00:00Z"
MAX_INSTANT_TEXT: Final = "9999-12-31T23:59:59.999Z"

# [0-9], not \d (which matches every Unicode digit), and \Z, not $ (which matches
# before a final newline).
_RFC3339: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)
_RFC3339_WHOLE: Final = re.compile(_RFC3339.pattern + r"\Z")
_NO_OFFSET: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?\Z"
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS: Final = timedelta(milliseconds=1)

_day_start_cache: dict[str, int] = {}
_DAY_CACHE_LIMIT: Final = 65_536


class TimestampError(ValueError):
    """Text is not an RFC 3339 timestamp with an offset, or not an instant relsec can hold."""


def _day_start_ms(text: str) -> int:
    """UTC ms at 00:00 of the date ``text[:10]`` (already shaped ``YYYY-MM-DD``)."""
    date = text[:10]
    cached = _day_start_cache.get(date)
    if cached is not None:
        return cached
    try:
        day = datetime(int(date[0:4]), int(date[5:7]), int(date[8:10]), tzinfo=UTC)
    except ValueError as exc:  # month 13, February 30, year 0
        raise TimestampError(messages.timestamp_bad_field(text, str(exc))) from None
    start = (day - _EPOCH).days * MS_PER_DAY
    if len(_day_start_cache) >= _DAY_CACHE_LIMIT:
        _day_start_cache.clear()
    _day_start_cache[date] = start
    return start


def parse_rfc3339_ms(text: str) -> int:
    """Parse an RFC 3339 timestamp that carries an offset into UTC epoch ms.

    Raises :class:`TimestampError` naming what is wrong; the result is always in
    ``[MIN_INSTANT_MS, MAX_INSTANT_MS]``.
    """
    ms = _parse_canonical(text)
    return ms if ms >= MIN_INSTANT_MS else _parse_any(text)


_NOT_CANONICAL: Final = MIN_INSTANT_MS - 1


def _parse_canonical(text: str) -> int:
    """The instant of ``YYYY-MM-DDTHH:MM:SSZ`` or ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (what relsec,
    most tools and every adapter write), or :data:`_NOT_CANONICAL` for any other text.

    Position checks and integer arithmetic, no regular expression and no ``datetime``
    (a tenth of a replay was this parse): ASCII digits only, hour, minute and second in
    range (a leap second is left to the general parser), the date through the same
    per-day cache as the general parser. Anything it declines, the general parser judges.
    """
    size = len(text)
    if size != 20 and size != 24:
        return _NOT_CANONICAL
    if not (
        text[4] == "-"
        and text[7] == "-"
        and text[10] == "T"
        and text[13] == ":"
        and text[16] == ":"
        and text[size - 1] == "Z"
    ):
        return _NOT_CANONICAL
    hour, minute, second = _digits(text, 11, 2), _digits(text, 14, 2), _digits(text, 17, 2)
    millis = 0
    if size == 24:
        if text[19] != ".":
            return _NOT_CANONICAL
        millis = _digits(text, 20, 3)
    if (
        hour < 0
        or hour > 23
        or minute < 0
        or minute > 59
        or second < 0
        or second > 59
        or millis < 0
        or _digits(text, 0, 4) < 0
        or _digits(text, 5, 2) < 0
        or _digits(text, 8, 2) < 0
    ):
        return _NOT_CANONICAL
    try:
        day_ms = _day_start_ms(text)
    except TimestampError:
        return _NOT_CANONICAL
    ms = day_ms + hour * MS_PER_HOUR + minute * MS_PER_MINUTE + second * MS_PER_SECOND + millis
    return ms if MIN_INSTANT_MS <= ms <= MAX_INSTANT_MS else _NOT_CANONICAL


def _digits(text: str, start: int, count: int) -> int:
    """The number written by ``count`` ASCII digits at ``start``, or -1 if one is not."""
    value = 0
    for index in range(start, start + count):
        digit = ord(text[index]) - 48
        if digit < 0 or digit > 9:
            return -1
        value = value * 10 + digit
    return value


def _parse_any(text: str) -> int:
    """:func:`parse_rfc3339_ms` for every spelling: the grammar, then ``fromisoformat``."""
    m = _RFC3339_WHOLE.match(text)
    if m is not None:
        offset_h = m[9]
        # Fast path: the grammar is checked above (and the offset and leap second,
        # which fromisoformat takes differently); the C parser does the calendar.
        if m[6] != "60" and (offset_h is None or (offset_h < "24" and m[10] < "60")):
            try:
                ms = (datetime.fromisoformat(text) - _EPOCH) // _ONE_MS
            except ValueError:
                pass  # ``t``/``z``, hour 24, February 30: the slow path words it
            else:
                if MIN_INSTANT_MS <= ms <= MAX_INSTANT_MS:
                    return ms
    return _parse_slow(text)


def _parse_slow(text: str) -> int:
    """:func:`parse_rfc3339_ms` by hand: every spelling the grammar allows, every error."""
    m = _RFC3339.match(text)
    if m is None or m.end() != len(text):
        raise TimestampError(_diagnose(text, m))
    _, _, _, hour_s, minute_s, second_s, fraction, sign, offset_h, offset_m = m.groups()
    hour, minute, second = int(hour_s), int(minute_s), int(second_s)
    if hour > 23:
        raise TimestampError(messages.timestamp_bad_field(text, "hour must be in 0..23"))
    if minute > 59:
        raise TimestampError(messages.timestamp_bad_field(text, "minute must be in 0..59"))
    if second > 60:
        raise TimestampError(messages.timestamp_bad_field(text, "second must be in 0..60"))
    millis = int((fraction + "00")[:3]) if fraction else 0
    if second == 60:  # a leap second is read as the last millisecond of its minute
        second, millis = 59, 999
    ms = (
        _day_start_ms(text)
        + hour * MS_PER_HOUR
        + minute * MS_PER_MINUTE
        + second * MS_PER_SECOND
        + millis
    )
    if sign is not None:
        oh, om = int(offset_h), int(offset_m)
        if oh > 23 or om > 59:
            raise TimestampError(messages.timestamp_bad_offset(text))
        offset_ms = oh * MS_PER_HOUR + om * MS_PER_MINUTE
        ms = ms - offset_ms if sign == "+" else ms + offset_ms
    if ms < MIN_INSTANT_MS or ms > MAX_INSTANT_MS:
        raise TimestampError(
            messages.timestamp_out_of_range(text, MIN_INSTANT_TEXT, MAX_INSTANT_TEXT)
        )
    return ms


def _diagnose(text: str, prefix: re.Match[str] | None) -> str:
    """The most useful thing to say about text the grammar refuses."""
    if not text.isascii():
        index, char = next((i, c) for i, c in enumerate(text) if ord(c) > 127)
        return messages.timestamp_non_ascii(text, index, char)
    if prefix is not None:
        return messages.timestamp_bad_field(
            text, f"unexpected characters after index {prefix.end() - 1}"
        )
    if _NO_OFFSET.match(text):
        return messages.timestamp_without_offset(text)
    return messages.not_rfc3339(text)


def instant_from_epoch_ms(value: object) -> int:
    """UTC epoch milliseconds given as a JSON number, checked to be an instant relsec can hold.

    For tools that send epoch numbers (Opsgenie's ``createdAt``): a float is floored
    to whole milliseconds; a boolean, NaN, an infinity or anything outside
    ``[MIN_INSTANT_MS, MAX_INSTANT_MS]`` raises :class:`TimestampError`.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TimestampError(messages.epoch_not_a_number(value))
    if isinstance(value, float):
        if not math.isfinite(value) or not MIN_INSTANT_MS <= value < MAX_INSTANT_MS + 1:
            raise TimestampError(
                messages.epoch_out_of_range(value, MIN_INSTANT_TEXT, MAX_INSTANT_TEXT)
            )
        return math.floor(value)
    if value < MIN_INSTANT_MS or value > MAX_INSTANT_MS:
        raise TimestampError(messages.epoch_out_of_range(value, MIN_INSTANT_TEXT, MAX_INSTANT_TEXT))
    return value


_TWO_DIGITS: Final = tuple(f"{n:02d}" for n in range(100))
_THREE_DIGITS: Final = tuple(f".{n:03d}Z" for n in range(1000))
_DAYS_0000_03_01_TO_EPOCH: Final = 719_468
_DAYS_PER_ERA: Final = 146_097
"""400 Gregorian years: the calendar repeats."""


def civil_from_days(days: int) -> tuple[int, int, int]:
    """(year, month, day) of a count of days since 1970-01-01, proleptic Gregorian.

    Integer arithmetic only (the algorithm counts years from March, so the leap day is
    the last day of a year): formatting every alert's instants is on the hot path, and
    ``datetime.fromtimestamp`` + ``strftime`` cost 15 times as much.
    """
    shifted = days + _DAYS_0000_03_01_TO_EPOCH
    era = shifted // _DAYS_PER_ERA
    day_of_era = shifted - era * _DAYS_PER_ERA
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    month_from_march = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * month_from_march + 2) // 5 + 1
    month = month_from_march + 3 if month_from_march < 10 else month_from_march - 9
    year = year_of_era + era * 400 + (1 if month <= 2 else 0)
    return year, month, day


_DATE_TEXTS: Final[dict[int, str]] = {}
"""``YYYY-MM-DDT`` of recently formatted days: a stream's instants fall on few days."""
_DATE_TEXTS_KEPT: Final = 4096


def _date_text(days: int) -> str:
    text = _DATE_TEXTS.get(days)
    if text is None:
        if len(_DATE_TEXTS) >= _DATE_TEXTS_KEPT:
            _DATE_TEXTS.clear()
        year, month, day = civil_from_days(days)
        text = _DATE_TEXTS[days] = f"{year:04d}-{_TWO_DIGITS[month]}-{_TWO_DIGITS[day]}T"
    return text


def format_rfc3339_ms(ms: int) -> str:
    """Format UTC epoch ms as RFC 3339 with ``Z``; milliseconds only when not zero.

    Defined for ``[MIN_INSTANT_MS, MAX_INSTANT_MS]``, every value the parsers return;
    outside it a ``ValueError`` says so (a caller's bug, not bad input).
    """
    if ms < MIN_INSTANT_MS or ms > MAX_INSTANT_MS:
        raise ValueError(messages.instant_out_of_range(ms, MIN_INSTANT_TEXT, MAX_INSTANT_TEXT))
    days = ms // MS_PER_DAY
    in_day = ms - days * MS_PER_DAY
    seconds = in_day // MS_PER_SECOND
    millis = in_day - seconds * MS_PER_SECOND
    two = _TWO_DIGITS
    text = (
        _date_text(days)
        + two[seconds // 3600]
        + ":"
        + two[seconds // 60 % 60]
        + ":"
        + two[seconds % 60]
    )
    return text + _THREE_DIGITS[millis] if millis else text + "Z"


# ASCII digits and blanks only: \d and \s would take Arabic-Indic digits and
# Unicode spaces, and float() would read them.
_DURATION: Final = re.compile(r"[ \t]*([0-9]+(?:\.[0-9]+)?)[ \t]*(ms|s|m|h|d|w)?[ \t]*\Z")
_UNIT_MS: Final = {
    "ms": 1,
    "s": MS_PER_SECOND,
    "m": MS_PER_MINUTE,
    "h": MS_PER_HOUR,
    "d": MS_PER_DAY,
    "w": 7 * MS_PER_DAY,
}
MAX_DURATION_MS: Final = 366 * MS_PER_DAY
"""The longest duration :func:`parse_duration_ms` takes: a year (and a leap day) of event
time, longer than any lateness or window worth keeping state for."""


def parse_duration_ms(text: str) -> int:
    """Parse ``24h``, ``90m``, ``7d``, ``1500ms`` or a bare number of seconds into ms.

    Exact decimal arithmetic, truncated to whole milliseconds; at most
    :data:`MAX_DURATION_MS`. Raises ``ValueError`` naming the text otherwise.
    """
    m = _DURATION.match(text)
    if m is None:
        raise ValueError(messages.not_a_duration(text))
    unit = m.group(2) or "s"
    ms = int(Decimal(m.group(1)) * _UNIT_MS[unit])
    if ms > MAX_DURATION_MS:
        raise ValueError(messages.duration_too_long(text, f"{MAX_DURATION_MS // MS_PER_DAY}d"))
    return ms

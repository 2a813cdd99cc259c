"""RFC 3339 timestamps <-> UTC epoch milliseconds, and duration strings.

Inside relsec every instant is an ``int`` of UTC epoch milliseconds; text is
parsed once at the edge. Sub-millisecond digits are truncated: two events less
than a millisecond apart are ordered by type rank and ``event_id``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)

MS_PER_SECOND = 1_000
MS_PER_MINUTE = 60 * MS_PER_SECOND
MS_PER_HOUR = 60 * MS_PER_MINUTE
MS_PER_DAY = 24 * MS_PER_HOUR


class TimestampError(ValueError):
    """Text is not an RFC 3339 timestamp with an offset."""


def parse_rfc3339_ms(text: str) -> int:
    """Parse an RFC 3339 timestamp that carries an offset into UTC epoch ms."""
    m = _RFC3339.match(text)
    if m is not None and m.group(6) != "60":
        # Fast path: the shape is checked above; the C parser does the arithmetic.
        try:
            return (datetime.fromisoformat(text) - _EPOCH) // _ONE_MS
        except ValueError:
            pass  # the slow path below names what is wrong
    if m is None:
        if re.match(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?$", text):
            raise TimestampError(f"timestamp {text!r} has no offset (add 'Z' or '+hh:mm')")
        raise TimestampError(f"{text!r} is not an RFC 3339 timestamp")
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    frac = m.group(7) or ""
    millis = int((frac + "000")[:3]) if frac else 0
    if m.group(8):
        offset_min = 0
    else:
        oh, om = int(m.group(10)), int(m.group(11))
        if oh > 23 or om > 59:
            raise TimestampError(f"timestamp {text!r} has an invalid offset")
        offset_min = (oh * 60 + om) * (-1 if m.group(9) == "-" else 1)
    if second == 60:  # a leap second is read as the last millisecond of its minute
        second, millis = 59, 999
    try:
        local = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as exc:
        raise TimestampError(f"timestamp {text!r}: {exc}") from None
    seconds = int((local - _EPOCH).total_seconds())
    return (seconds - offset_min * 60) * MS_PER_SECOND + millis


@lru_cache(maxsize=65_536)
def format_rfc3339_ms(ms: int) -> str:
    """Format UTC epoch ms as RFC 3339 with ``Z``; milliseconds only when not zero."""
    seconds, millis = divmod(ms, MS_PER_SECOND)
    dt = datetime.fromtimestamp(seconds, tz=UTC)
    # The year by hand: strftime does not pad years before 1000 to four digits.
    base = f"{dt.year:04d}" + dt.strftime("-%m-%dT%H:%M:%S")
    return f"{base}.{millis:03d}Z" if millis else f"{base}Z"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_MS = {
    "ms": 1,
    "s": MS_PER_SECOND,
    "m": MS_PER_MINUTE,
    "h": MS_PER_HOUR,
    "d": MS_PER_DAY,
    "w": 7 * MS_PER_DAY,
}


def parse_duration_ms(text: str) -> int:
    """Parse ``24h``, ``90m``, ``7d``, ``1500ms`` or a bare number of seconds into ms."""
    m = _DURATION.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a duration (examples: 24h, 90m, 7d, 30s, 1500ms)")
    value = float(m.group(1))
    unit = m.group(2) or "s"
    return int(value * _UNIT_MS[unit])

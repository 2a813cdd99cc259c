"""The codec's fast instant conversions give exactly what agents.model.timefmt gives."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.model.timefmt import TimestampError, format_rfc3339_ms, parse_rfc3339_ms
from streams.codecs.datum import format_instant, parse_instant

MIN_MS = -62_135_596_800_000  # 0001-01-01T00:00:00Z
YEAR_1000_MS = -30_610_224_000_000  # 1000-01-01T00:00:00Z; before it, %Y is not 4 digits
MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


@settings(max_examples=1000, deadline=None)
@given(ms=st.integers(MIN_MS, MAX_MS) | st.integers(0, 4_102_444_800_000))
def test_format_agrees_with_the_reference(ms: int) -> None:
    assert format_instant(ms) == format_rfc3339_ms(ms)


@settings(max_examples=1000, deadline=None)
@given(ms=st.integers(YEAR_1000_MS, MAX_MS) | st.integers(0, 4_102_444_800_000))
def test_parse_agrees_with_the_reference(ms: int) -> None:
    text = format_rfc3339_ms(ms)
    assert parse_instant(text) == parse_rfc3339_ms(text) == ms


def _outcome(fn, text: str) -> tuple[str, object]:  # type: ignore[no-untyped-def]
    try:
        return ("ok", fn(text))
    except TimestampError as exc:
        return ("error", str(exc))


@pytest.mark.parametrize(
    "text",
    [
        "2026-03-04T09:20:00Z",
        "2026-03-04T09:20:00.250Z",
        "2026-02-30T09:20:00Z",
        "2026-03-04T24:00:00Z",
        "2026-03-04T23:60:00Z",
        "2016-12-31T23:59:60Z",
        "2016-12-31T23:59:60.500Z",
        "2026-03-04T09:20:00.25Z",
        "2026-03-04T09:20:00.2500Z",
        "2026-03-04t09:20:00Z",
        "2026-03-04T09:20:00z",
        "2026-03-04T09:20:00+01:00",
        "2026-03-04T09:20:00",
        "2026-03-04T0a:20:00Z",
        "2026-03-04T0²:20:00Z",
        "2026-03-04T\u0660\u0669:20:00Z",
        "\u0662\u0660\u0662\u0666-03-04T09:20:00Z",
        "2026-03-04T09:20:00,250Z",
        "2026-03-04T-1:20:00Z",
        "0999-01-01T00:00:00Z",
        "",
        "garbage-garbage-gar",
    ],
)
def test_edge_cases_agree_with_the_reference(text: str) -> None:
    assert _outcome(parse_instant, text) == _outcome(parse_rfc3339_ms, text)


@settings(max_examples=1000, deadline=None)
@given(
    text=st.from_regex(
        "\\A[0-9\u0660-\u0669]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9\u00b2]{2}:[0-9]{2}:[0-9]{2}"
        "(\\.[0-9]{1,4})?[Zz]\\Z"
    )
)
def test_near_canonical_texts_agree_with_the_reference(text: str) -> None:
    assert _outcome(parse_instant, text) == _outcome(parse_rfc3339_ms, text)

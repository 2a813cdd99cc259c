"""Hostile inputs for the fuzz tests and the fuzz campaign: event lines and tool payloads.

Every generator takes a :class:`Chooser`, so the same code runs under hypothesis
(:class:`DrawChooser`, shrinkable, seeded by ``derandomize``) and in the standalone
campaign (:class:`RandomChooser`, ``random.Random(seed)``).

:func:`hostile_line` mutates a valid event into a line that relsec must refuse, and
says which dead-letter reasons may refuse it. Each kind of mutation is one function
in :data:`LINE_MUTATIONS`: wrong types, missing fields, huge strings, control
characters, odd timestamps, odd Unicode, deep nesting, invalid UTF-8, byte order
marks, NaN/Infinity, duplicate keys, non-objects, empty names, unknown enums, the
wrong ``type``. None of them writes a raw line feed, so a line stays one line.

:func:`mutate_payload` changes a decoded tool payload in a few places (values
replaced by hostile ones, keys deleted, lists blown up to scanner size).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

import orjson
from hypothesis import strategies as st

from agents.model.events import NAME_FORBIDDEN_RANGES, TEXT_FORBIDDEN_RANGES
from agents.model.timefmt import format_rfc3339_ms

T = TypeVar("T")


class Chooser(Protocol):
    """Where the generators get their choices from."""

    max_string: int
    """The longest huge string to build (kept small under hypothesis, large in the campaign)."""

    def integer(self, lo: int, hi: int) -> int: ...

    def pick(self, options: Sequence[T]) -> T: ...


class RandomChooser:
    def __init__(self, rng: random.Random, max_string: int = 600_000) -> None:
        self.rng = rng
        self.max_string = max_string

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def pick(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]


class DrawChooser:
    def __init__(self, data: st.DataObject, max_string: int = 20_000) -> None:
        self.data = data
        self.max_string = max_string

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))

    def pick(self, options: Sequence[T]) -> T:
        return self.data.draw(st.sampled_from(options))


# --- what each kind validates ---------------------------------------------------------

NAMES: Final = {
    "deploy": ("event_id", "source", "service", "environment", "release"),
    "incident": ("event_id", "source", "service", "environment", "incident_id"),
    "security_flag": ("event_id", "source", "service", "flag_id", "release"),
}
OPTIONAL_NAMES: Final = {
    "deploy": ("previous_release", "incident_id"),
    "incident": ("suspected_release",),
    "security_flag": ("fixed_in",),
}
TEXTS: Final = {"deploy": (), "incident": ("title",), "security_flag": ("title",)}
OPTIONAL_TEXTS: Final = {"deploy": ("actor", "reason"), "incident": (), "security_flag": ()}
ENUMS: Final = {
    "deploy": ("action",),
    "incident": ("status", "severity"),
    "security_flag": ("status", "severity"),
}
OPTIONAL_ENUMS: Final = {"deploy": ("status", "team"), "incident": (), "security_flag": ()}
LISTS: Final = {
    "deploy": ("release_aliases",),
    "incident": ("release_aliases",),
    "security_flag": ("vulnerabilities", "release_aliases"),
}
LIST_LIMITS: Final = {"vulnerabilities": 1000, "release_aliases": 64}


def _required(kind: str) -> tuple[str, ...]:
    return ("type", "occurred_at", *NAMES[kind], *TEXTS[kind], *ENUMS[kind])


def _validated(kind: str) -> tuple[str, ...]:
    return (
        *_required(kind), *OPTIONAL_NAMES[kind], *OPTIONAL_TEXTS[kind], *OPTIONAL_ENUMS[kind],
        *LISTS[kind],
    )


def _chars(ranges: Sequence[tuple[int, int]]) -> tuple[str, ...]:
    # Lone surrogates cannot be serialized by orjson; they come as raw JSON escapes instead.
    return tuple(
        chr(cp) for lo, hi in ranges for cp in range(lo, min(hi, lo + 40) + 1)
        if not 0xD800 <= cp <= 0xDFFF
    )


NAME_FORBIDDEN: Final = _chars(NAME_FORBIDDEN_RANGES)
TEXT_FORBIDDEN: Final = _chars(TEXT_FORBIDDEN_RANGES)
NON_STRINGS: Final[tuple[Any, ...]] = (
    0, -1, 1.5, 1e308, True, False, [], ["x"], {}, {"a": "b"}, [[["nested"]]],
)
BAD_ENUM_WORDS: Final = (
    "redeploy", "SUCCEEDED", "Deploy", "sev0", "sev6", "Critical", "open", "closed",
    "raised ", " raised", "succeeded\u200b", "\uff44\uff45\uff50\uff4c\uff4f\uff59",
    "depl\u043ey", "info", "pending", "risk-accepted", "null", "None", "true", "0",
)
REFUSED_TIMESTAMPS: Final = (
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0000-01-01T00:00:00Z",
    "2026-03-04T09:20:00Z\n", "2026-03-04T09:20:00Z ", " 2026-03-04T09:20:00Z",
    "\u0662\u0660\u0662\u0666-03-04T09:20:00Z", "2026-03-04T\u0660\u0669:20:00Z",
    "\uff12\uff10\uff12\uff16-03-04T09:20:00Z", "2026-03-04T09:20:00+05:60",
    "2026-03-04T09:20:00+24:00", "2026-03-04T09:20:00-00:99", "2026-03-04T09:20:00",
    "2026-03-04T09:20:00.123", "2026-02-30T09:20:00Z", "2026-03-04T24:00:00Z",
    "2026-03-04T09:20:00.1234567890Z", "2026-03-04T09:20:00,5Z", "2026-03-04", "yesterday",
    "1772616000000", "", "2026-03-04T09:20:00+0100", "2026-13-01T00:00:00Z",
    "2026-03-04T09:60:00Z", "2026-03-04T09:20:61Z", "2026-03-04T09:20:00.Z",
)
FUTURE_TIMESTAMPS: Final = (
    "9999-12-31T23:59:59.999Z", "9999-12-31T23:59:60Z", "2999-01-01T00:00:00Z",
    "9999-12-31T23:59:59+00:00",
)
LOOKALIKE_DIGITS: Final = "\u0660\u0661\u06f5\u0967\u09ec\uff10\uff19\u00b2\u2075\U0001d7ce"
INVALID_UTF8: Final = (
    b"\xff", b"\xfe", b"\x80", b"\xc3(", b"\xe2\x82(", b"\xed\xa0\x80", b"\xc0\xaf",
    b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xe0\x80\xaf",
)
NON_NUMBERS: Final = (b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e999", b"nan", b"inf")
BOMS: Final = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf\xef\xbb\xbf")


@dataclass(frozen=True, slots=True)
class HostileLine:
    """One line relsec must refuse, the mutation that made it, and the reasons allowed."""

    raw: bytes
    mutation: str
    reasons: frozenset[str]


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def _with_raw(event: dict[str, Any], field: str, raw_value: bytes) -> bytes:
    """The event's JSON with ``field`` set to ``raw_value`` written as is (not valid JSON)."""
    rest = {k: v for k, v in event.items() if k != field}
    head = _dumps(rest)[:-1]
    sep = b"," if rest else b""
    return head + sep + _dumps(field) + b":" + raw_value + b"}"


def _huge(c: Chooser, lo: int) -> str:
    """A string just over a limit, or (log-uniformly) up to ``c.max_string`` characters."""
    hi = max(lo, c.max_string)
    size = int(lo * (hi / lo) ** (c.integer(0, 1000) / 1000)) if c.integer(0, 3) else lo
    unit = c.pick(("x", "\u00e9", "\u4e2d", "\U0001f680", "ab", "\\", '"'))
    return (unit * (size // len(unit) + 1))[:size]


def _insert(text: str, c: Chooser, char: str) -> str:
    i = c.integer(0, len(text))
    return text[:i] + char + text[i:]


def _field(c: Chooser, options: Sequence[str]) -> str:
    return c.pick(tuple(options))


def wrong_type(c: Chooser, e: dict[str, Any]) -> tuple[bytes, frozenset[str]]:
    kind = e["type"]
    field = _field(c, _validated(kind))
    if field in LISTS[kind]:
        value: Any = c.pick(("CVE-1", 5, {"a": 1}, True, 1.5, ["ok", 5], [None], [["x"]], [{}]))
    else:
        value = c.pick(NON_STRINGS)
    return _dumps({**e, field: value}), frozenset({"wrong_type"})


def missing(c: Chooser, e: dict[str, Any]) -> tuple[bytes, frozenset[str]]:
    field = _field(c, _required(e["type"]))
    dropped = {k: v for k, v in e.items() if k != field}
    return _dumps(dropped if c.integer(0, 1) else {**e, field: None}), frozenset({"missing"})


def huge_string(c: Chooser, e: dict[str, Any]) -> tuple[bytes, frozenset[str]]:
    kind = e["type"]
    group = c.pick(("name", "text", "enum", "timestamp", "list", "entry"))
    if group == "name":
        field = _field(c, (*NAMES[kind], *OPTIONAL_NAMES[kind]))
        value: Any = _huge(c, 101 if field == "environment" else 201)
    elif group == "text" and (TEXTS[kind] or OPTIONAL_TEXTS[kind]):
        field = _field(c, (*TEXTS[kind], *OPTIONAL_TEXTS[kind]))
        value = _huge(c, 4097)
    elif group == "enum":
        field = _field(c, ("type", *ENUMS[kind], *OPTIONAL_ENUMS[kind]))
        value = _huge(c, c.pick((20, 70, 1000)))
    elif group == "list":
        field = _field(c, LISTS[kind])
        limit = LIST_LIMITS[field]
        value = [f"ID-{i}" for i in range(c.integer(limit + 1, limit * 3))]
    elif group == "entry":
        field = _field(c, LISTS[kind])
        value = ["ok", _huge(c, 201)]
    else:
        field = "occurred_at"
        value = _huge(c, c.pick((30, 100, 5000)))
    return _dumps({**e, field: value}), frozenset({"too_long", "unknown_enum", "bad_timestamp"})


def control_character(c: Chooser, e: dict[str, Any]) -> tuple[bytes, frozenset[str]]:
    kind = e["type"]
    texts = (*TEXTS[kind], *OPTIONAL_TEXTS[kind])
    if texts and c.integer(0, 3) == 0:
        field = _field(c, texts)
        value: Any = _insert(str(e.get(field) or "text"), c, c.pick(TEXT_FORBIDDEN))
    elif c.integer(0, 4) == 0:
        field = _field(c, LISTS[kind])
        entries = [*(e.get(field) or []), "ok"]
        i = c.integer(0, len(entries) - 1)
        entries[i] = _insert(entries[i], c, c.pick(NAME_FORBIDDEN))
        value = entries
    else:
        field = _field(c, (*NAMES[kind], *OPTIONAL_NAMES[kind]))
        base = str(e.get(field) or "name")
        value = _insert(base, c, c.pick(NAME_FORBIDDEN))
        if len(value) > 200:
            value = value[:200] if c.integer(0, 1) else value[-200:]
            if not any(ch in value for ch in NAME_FORBIDDEN):
                value = value[:-1] + "\x1f"
    return _dumps({**e, field: value}), frozenset({"control_character"})


def odd_timestamp(c: Chooser, e: dict[str, Any]) -> tuple[bytes, frozenset[str]]:
    how = c.pick(("listed", "lookalike", "trailing", "offset", "fraction", "future"))
    text = str(e["occurred_at"])
    if how == "listed":
        value = c.pick(REFUSED_TIMESTAMPS)
    elif how == "lookalike":
        digits = [i for i, ch in enumerate(text) if ch.isdigit()]
        i = c.pick(digits)
        value = text[:i] + c.pick(LOOKALIKE_DIGITS) + text[i + 1:]
    elif how == "trailing":
        value = text + c.pick(("\n", "\r", " ", "\t", "Z", "\x00", "\u2028", "x"))
    elif how == "offset":
        hours, minutes = c.integer(0, 99), c.integer(0, 99)
        if hours < 24 and minutes < 60:
            minutes = 60 + minutes % 40
        value = f"{text[:19]}{c.pick('+-')}{hours:02d}:{minutes:02d}"
    elif how == "fraction":
        value = text[:19] + "." + "1" * c.integer(10, 40) + "Z"
    else:
        value = c.pick(FUTURE_TIMESTAMPS)
        return _dumps({**e, "occurred_at": value}), frozenset({"future"})
    return _dumps({**e, "occurred_at": value}), frozenset({"bad_timestamp"})


def odd_unicode(c: Chooser, e: dict[str, Any]) -> tuple[bytes, frozenset[str]]:
    kind = e["type"]
    how = c.pick(("surrogate", "enum", "type", "invisible"))
    if how == "surrogate":
        field = _field(c, (*NAMES[kind], *TEXTS[kind]))
        escape = c.pick((b"\\ud800", b"\\udfff", b"\\udbff\\u0041", b"x\\ud83d"))
        return _with_raw(e, field, b'"' + escape + b'"'), frozenset({"invalid_json"})
    if how in ("enum", "type"):
        field = "type" if how == "type" else _field(c, ENUMS[kind])
        value = str(e[field])
        i = c.integer(0, len(value) - 1)
        swap = {"e": "\u0435", "o": "\u043e", "a": "\u0430", "c": "\u0441", "p": "\u0440"}
        mutated = value[:i] + swap.get(value[i], "\u200b" + value[i]) + value[i + 1:]
        return _dumps({**e, field: mutated}), frozenset({"unknown_enum"})
    field = _field(c, NAMES[kind])
    value = _insert(str(e[field]), c, c.pick(("\ufeff", "\u200b", "\u202e", "\u2066", "\u00ad")))
    if len(value) > 200:
        value = "\u202e" + value[:199]
    return _dumps({**e, field: value}), frozenset({"control_character"})


def deep_nesting(c: Chooser, e: dict[str, Any]) -> tuple[bytes, frozenset[str]]:
    depth = c.pick((2, 10, 200, 1000, 1100, 5000))
    opener, closer = c.pick(((b"[", b"]"), (b'{"a":', b"}")))
    nested = opener * depth + b"1" + closer * depth
    if c.integer(0, 4) == 0:  # the whole line: an array ($ is no object) or an object
        return nested, frozenset({"wrong_type", "missing", "invalid_json"})
    field = _field(c, _required(e["type"]))
    return _with_raw(e, field, nested), frozenset({"wrong_type", "invalid_json"})


def invalid_utf8(c: Chooser, e: dict[str, Any]) -> tuple[bytes, frozenset[str]]:
    line = _dumps(e)
    i = c.integer(0, len(line))
    return line[:i] + c.pick(INVALID_UTF8) + line[i:], frozenset({"invalid_json"})


def byte_order_mark(c: Chooser, e: dict[str, Any]) -> tuple[bytes, frozenset[str]]:
    """A BOM that does not open the file: part of its line, which is then not JSON.

    Inside a line only the UTF-16 ones (invalid UTF-8): a UTF-8 BOM inside a JSON
    string is the character U+FEFF, which free text may hold."""
    line = _dumps(e)
    if c.integer(0, 1):
        return c.pick(BOMS) + line, frozenset({"invalid_json"})
    i = c.integer(1, len(line) - 1)
    return line[:i] + c.pick((b"\xff\xfe", b"\xfe\xff")) + line[i:], frozenset({"invalid_json"})


def not_a_number(c: Chooser, e: dict[str, Any]) -> tuple[bytes, frozenset[str]]:
    field = _field(c, _validated(e["type"]))
    return _with_raw(e, field, c.pick(NON_NUMBERS)), frozenset({"invalid_json"})


def duplicate_key(c: Chooser, e: dict[str, Any]) -> tuple[bytes, frozenset[str]]:
    """A second copy of a key with a bad value: the last one counts (as in orjson,
    Python's json and JavaScript), so the line is refused."""
    kind = e["type"]
    field = _field(c, (*NAMES[kind], *ENUMS[kind], "occurred_at"))
    bad = c.pick((b"5", b"null", b"[]", b'""', b'"no\\u001fpe"', b"{}", b"false"))
    line = _dumps(e)
    line = line[:-1] + b"," + _dumps(field) + b":" + bad + b"}"
    return line, frozenset(
        {"wrong_type", "missing", "too_short", "control_character", "unknown_enum",
         "bad_timestamp"}
    )


def not_an_object(c: Chooser, e: dict[str, Any]) -> tuple[bytes, frozenset[str]]:
    line = _dumps(e)
    how = c.pick(("array", "scalar", "empty", "truncated", "garbage", "two"))
    if how == "array":
        return b"[" + line + b"]", frozenset({"wrong_type"})
    if how == "scalar":
        return c.pick((b'"deploy"', b"42", b"null", b"true", b"-0.5e3")), frozenset({"wrong_type"})
    if how == "empty":
        return b"{}", frozenset({"missing"})
    if how == "truncated":
        return line[: c.integer(1, len(line) - 1)], frozenset({"invalid_json"})
    if how == "two":
        return line + b" " + line, frozenset({"invalid_json"})
    return c.pick((b"garbage", b"{not json", b"<xml/>", b"\x00\x01\x02", b"}{", b"'single'")), \
        frozenset({"invalid_json"})


def empty_name(c: Chooser, e: dict[str, Any]) -> tuple[bytes, frozenset[str]]:
    kind = e["type"]
    field = _field(c, (*NAMES[kind], *ENUMS[kind], "type"))
    return _dumps({**e, field: ""}), frozenset({"too_short", "unknown_enum"})


def unknown_enum(c: Chooser, e: dict[str, Any]) -> tuple[bytes, frozenset[str]]:
    kind = e["type"]
    field = _field(c, ("type", *ENUMS[kind], *OPTIONAL_ENUMS[kind]))
    return _dumps({**e, field: c.pick(BAD_ENUM_WORDS)}), frozenset({"unknown_enum"})


def wrong_kind(c: Chooser, e: dict[str, Any]) -> tuple[bytes, frozenset[str]]:
    other = c.pick(tuple(k for k in NAMES if k != e["type"]))
    return _dumps({**e, "type": other}), frozenset({"missing", "unknown_enum"})


Mutation = Callable[[Chooser, dict[str, Any]], tuple[bytes, frozenset[str]]]
LINE_MUTATIONS: Final[dict[str, Mutation]] = {
    "wrong_type": wrong_type,
    "missing": missing,
    "huge_string": huge_string,
    "control_character": control_character,
    "odd_timestamp": odd_timestamp,
    "odd_unicode": odd_unicode,
    "deep_nesting": deep_nesting,
    "invalid_utf8": invalid_utf8,
    "byte_order_mark": byte_order_mark,
    "not_a_number": not_a_number,
    "duplicate_key": duplicate_key,
    "not_an_object": not_an_object,
    "empty_name": empty_name,
    "unknown_enum": unknown_enum,
    "wrong_kind": wrong_kind,
}


def hostile_line(c: Chooser, valid: dict[str, Any], serial: int) -> HostileLine:
    """A mutation of ``valid`` (given its own ``event_id``, so that it can never be taken
    for a duplicate of a valid line) that relsec must dead-letter."""
    name = c.pick(tuple(LINE_MUTATIONS))
    event = {**valid, "event_id": f"hostile-{serial}"}
    raw, reasons = LINE_MUTATIONS[name](c, event)
    assert b"\n" not in raw, name
    return HostileLine(raw, name, reasons)


# --- tool payloads -----------------------------------------------------------------

def json_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out.extend(json_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for i, value in enumerate(node[:50]):
            out.extend(json_paths(value, (*prefix, i)))
    return out


def _hostile_value(c: Chooser, old: Any) -> Any:
    how = c.pick((
        "null", "empty", "huge", "control", "number", "bool", "container", "deep",
        "timestamp", "epoch", "lookalike", "type_swap", "enumish",
    ))
    if how == "null":
        return None
    if how == "empty":
        return c.pick(("", [], {}))
    if how == "huge":
        return _huge(c, c.pick((201, 4097, 70_000)))
    if how == "control":
        return _insert(str(old) if isinstance(old, str) else "value", c,
                       c.pick((*NAME_FORBIDDEN, "\n", "\t")))
    if how == "number":
        return c.pick((0, -1, 1.5e308, -1.5e308, 2**63 - 1, -(2**63), 1e-300, 10**15, 0.5))
    if how == "bool":
        return c.pick((True, False))
    if how == "container":
        return c.pick(([old], {"value": old}, [None], [[]], [{}]))
    if how == "deep":
        value: Any = "leaf"
        for _ in range(c.pick((5, 50, 200))):
            value = [value] if c.integer(0, 1) else {"k": value}
        return value
    if how == "timestamp":
        return c.pick((*REFUSED_TIMESTAMPS, *FUTURE_TIMESTAMPS, "1970-01-01T00:00:00Z"))
    if how == "epoch":
        return c.pick((1.5e308, -1.5e308, 10**19, -(2**63), 253_402_300_800_000, 0.1, -1))
    if how == "lookalike" and isinstance(old, str) and any(ch.isdigit() for ch in old):
        digits = [i for i, ch in enumerate(old) if ch.isdigit()]
        i = c.pick(digits)
        return old[:i] + c.pick(LOOKALIKE_DIGITS) + old[i + 1:]
    if how == "type_swap":
        if isinstance(old, str):
            return c.pick((0, [old], {"s": old}))
        if isinstance(old, int | float) and not isinstance(old, bool):
            return str(old)
        return "text"
    return c.pick((*BAD_ENUM_WORDS, "", "P0", "P9", "SEVERITY_UNKNOWN", "Unknown"))


def set_at(root: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = root
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return root


def delete_at(root: Any, path: tuple[Any, ...]) -> Any:
    if not path:
        return root
    parent = root
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    return root


def mutate_payload(c: Chooser, payload: Any) -> Any:
    """A deep copy of ``payload`` with 1 to 4 hostile changes (at most one list blown up
    to scanner size, so the payload stays a few MB)."""
    root = orjson.loads(orjson.dumps(payload))
    blown = False
    for _ in range(c.integer(1, 4)):
        paths = json_paths(root)
        path = _target(c, root, paths)
        how = c.pick(("replace", "replace", "replace", "delete", "blow_up"))
        if how == "delete" and path:
            root = delete_at(root, path)
        elif how == "blow_up" and not blown:
            lists = [p for p in paths if isinstance(get_at(root, p), list) and get_at(root, p)]
            if lists:
                target = c.pick(lists)
                items = get_at(root, target)
                item_bytes = max(1, len(orjson.dumps(items)) // len(items))
                count = min(c.integer(100, 3000), max(len(items), 4_000_000 // item_bytes))
                root = set_at(root, target, (items * (count // len(items) + 1))[:count])
                root = orjson.loads(orjson.dumps(root))  # no shared entries
                blown = True
        else:
            root = set_at(root, path, _hostile_value(c, get_at(root, path)))
    return root


_TELLING_KEYS: Final = re.compile(
    r"(?i)(time|date|_at$|At$|created|updated|id$|Id$|ID$|name|service|env|version|tag|digest|"
    r"image|status|state|severity|priority|action|type|revision|sha|ref|uuid|url)"
)


def _target(c: Chooser, root: Any, paths: Sequence[tuple[Any, ...]]) -> tuple[Any, ...]:
    """Where to change: any node, a leaf, or a leaf whose key says what adapters read
    (times, ids, names, versions, states) more often than chance would."""
    how = c.integer(0, 2)
    if how == 0:
        return c.pick(paths)
    leaves = [p for p in paths if p and not isinstance(get_at(root, p), dict | list)]
    if how == 2:
        telling = [p for p in leaves if isinstance(p[-1], str) and _TELLING_KEYS.search(p[-1])]
        leaves = telling or leaves
    return c.pick(leaves or paths)


def get_at(root: Any, path: tuple[Any, ...]) -> Any:
    node = root
    for key in path:
        node = node[key]
    return node


def describe(value: Any, limit: int = 300) -> str:
    """A short JSON rendering of a payload for a failure message."""
    try:
        text = orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


def format_instant(ms: int) -> str:
    return format_rfc3339_ms(ms)

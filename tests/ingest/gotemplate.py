"""A tiny evaluator for the Go text/template subset relsec's Argo CD template uses.

Supported: ``{{ toJson PIPE }}``, ``{{ with PIPE }}..{{ else }}..{{ end }}`` (nested),
``(or A B ...)`` and field chains (``.app.status.sync``) over JSON data, with Go's
rules for a missing map key (the zero value, nil) and for ``with`` / ``or`` (empty
values are false). Anything else raises, so the test fails rather than guesses if
the template grows a construct this evaluator does not know. Argo CD itself runs
Go's text/template with sprig's ``toJson`` (``json.Marshal``).
"""

from __future__ import annotations

import json
import re
from typing import Any

_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)


class TemplateError(Exception):
    pass


def _truthy(value: Any) -> bool:
    return value not in (None, False, 0, "", [], {})


def _field(dot: Any, chain: str) -> Any:
    value = dot
    for name in chain.strip(".").split("."):
        if not name:
            continue
        if value is None:
            raise TemplateError(f"nil pointer evaluating .{name}")
        if not isinstance(value, dict):
            raise TemplateError(f"can't evaluate field {name} in {type(value).__name__}")
        value = value.get(name)
    return value


def _tokens(expr: str) -> list[str]:
    return re.findall(r"\(|\)|[^\s()]+", expr)


def _eval(tokens: list[str], dot: Any) -> Any:
    def term(i: int) -> tuple[Any, int]:
        tok = tokens[i]
        if tok == "(":
            value, j = call(i + 1)
            if tokens[j] != ")":
                raise TemplateError("unbalanced parenthesis")
            return value, j + 1
        if tok.startswith("."):
            return _field(dot, tok), i + 1
        raise TemplateError(f"unsupported term {tok!r}")

    def call(i: int) -> tuple[Any, int]:
        tok = tokens[i]
        if tok in ("or", "toJson"):
            args: list[Any] = []
            j = i + 1
            while j < len(tokens) and tokens[j] != ")":
                value, j = term(j)
                args.append(value)
            if tok == "toJson":
                if len(args) != 1:
                    raise TemplateError("toJson takes one argument")
                return json.dumps(args[0], separators=(",", ":"), sort_keys=True), j
            for value in args:
                if _truthy(value):
                    return value, j
            return args[-1], j
        return term(i)

    value, end = call(0)
    if end != len(tokens):
        raise TemplateError(f"trailing tokens in {' '.join(tokens)!r}")
    return value


def render(template: str, data: Any) -> str:
    """Render ``template`` with ``data`` as the dot."""
    parts: list[tuple[str, str]] = []
    pos = 0
    for m in _ACTION.finditer(template):
        parts.append(("text", template[pos : m.start()]))
        parts.append(("action", m.group(1)))
        pos = m.end()
    parts.append(("text", template[pos:]))

    def block(i: int, dot: Any, out: list[str] | None) -> tuple[int, str | None]:
        while i < len(parts):
            kind, text = parts[i]
            if kind == "text":
                if out is not None:
                    out.append(text)
                i += 1
                continue
            if text in ("else", "end"):
                return i, text
            if text.startswith("with "):
                value = _eval(_tokens(text[5:]), dot) if out is not None else None
                live = out is not None and _truthy(value)
                i, stop = block(i + 1, value, out if live else None)
                if stop == "else":
                    i, stop = block(i + 1, dot, out if (out is not None and not live) else None)
                if stop != "end":
                    raise TemplateError("with without end")
                i += 1
                continue
            if out is not None:
                value = _eval(_tokens(text), dot)
                out.append("<no value>" if value is None else str(value))
            i += 1
        return i, None

    out: list[str] = []
    _, stop = block(0, data, out)
    if stop is not None:
        raise TemplateError(f"unexpected {{{{{stop}}}}}")
    return "".join(out)

"""The one root exception of relsec, the errors of the model and engine, and locations.

Every error relsec raises on purpose derives from :class:`RelsecError`, so a
caller can catch relsec's failures without catching programming errors. This
module holds the root and the errors of the layers everything else stands on
(the model, the engine, the codecs and replay that feed it): :class:`ValidationError`,
:class:`DecodeError`, :class:`FileError`, :class:`StateError`, :class:`ConfigError`.
Each layer above defines its own errors in the ``errors`` module of its package
(``streams.devkafka.errors``, ``streams.kafka.errors``, ``streams.ingest.errors``,
``streams.notify.errors``, ``streams.catalog.errors``, ``streams.worker.errors``).

Errors carry *where* they came from as values (:class:`FileLine`,
:class:`RecordAt`, :class:`JsonPath`), which render as the text a message shows,
so a caller, a log line or a test can read the file and line, the
topic/partition/offset or the JSON path without parsing a message. A plain
string is still accepted wherever a location is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, TypeAlias

# -- locations ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileLine:
    """A line of a file (``line`` counts from 1), shown ``path:line``."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True, slots=True)
class RecordAt:
    """Where a Kafka record is or was going: a topic, maybe a partition and an offset.

    Shown ``topic[partition]@offset`` (the parts known).
    """

    topic: str
    partition: int | None = None
    offset: int | None = None

    def __str__(self) -> str:
        text = self.topic
        if self.partition is not None:
            text += f"[{self.partition}]"
        if self.offset is not None:
            text += f"@{self.offset}"
        return text


_JSON_NAME: Final = re.compile(r"[A-Za-z0-9_@\-]+")
_JSON_STEP: Final = re.compile(r"\.([A-Za-z0-9_@\-]+)|\[(\d+)\]|\[['\"]([^'\"]+)['\"]\]")


@dataclass(frozen=True, slots=True)
class JsonPath:
    """A place in a JSON document: the keys and indexes from its root, shown ``$.a.b[0]``.

    A key that is not a plain name is shown quoted (``$.metadata['relsec.io/x']``).
    """

    steps: tuple[str | int, ...] = ()

    def __str__(self) -> str:
        return "$" + "".join(self.render_step(step) for step in self.steps)

    def child(self, step: str | int) -> JsonPath:
        return JsonPath((*self.steps, step))

    @staticmethod
    def render_step(step: str | int) -> str:
        if isinstance(step, int):
            return f"[{step}]"
        if _JSON_NAME.fullmatch(step):
            return f".{step}"
        return f"['{step}']"

    @staticmethod
    def parse(text: str) -> JsonPath:
        """``$.a.b[0]['x.y/z']`` -> ``JsonPath(("a", "b", 0, "x.y/z"))``.

        Raises :class:`ValueError` saying where the text stops being a path.
        """
        if not text.startswith("$"):
            raise ValueError("must start with '$'")
        steps: list[str | int] = []
        pos = 1
        while pos < len(text):
            m = _JSON_STEP.match(text, pos)
            if m is None:
                raise ValueError(f"cannot read from character {pos + 1}")
            name, index, quoted = m.groups()
            steps.append(int(index) if index is not None else name if name is not None else quoted)
            pos = m.end()
        return JsonPath(tuple(steps))

    @staticmethod
    def of(text: str) -> JsonPath | str:
        """``text`` as a :class:`JsonPath` when it is one written the canonical way (so its
        rendering is ``text`` again), else ``text`` itself (a derived name like ``service``)."""
        try:
            path = JsonPath.parse(text)
        except ValueError:
            return text
        return path if str(path) == text else text


Location: TypeAlias = FileLine | RecordAt | JsonPath | str
"""Where an error happened, as a value (a plain string for what has no structure)."""


# -- the root and the errors of the model, the engine, the codecs and replay ------


class RelsecError(Exception):
    """Root of every error relsec raises on purpose."""


class ValidationError(RelsecError):
    """An event or payload failed validation.

    ``field`` names the offending field (dotted path); ``reason`` is a short
    machine-readable word (``missing``, ``wrong_type``, ``unknown_enum``,
    ``bad_timestamp``, ``too_long``, ``too_short``) and ``detail`` the
    human-readable explanation. ``where`` is filled in by the caller that knows
    the location (a :class:`FileLine`, a :class:`RecordAt`).
    """

    def __init__(self, field: str, reason: str, detail: str, where: Location | None = None) -> None:
        self.field = field
        self.reason = reason
        self.detail = detail
        self.where = where
        super().__init__(self._message())

    def _message(self) -> str:
        prefix = f"{self.where}: " if self.where else ""
        return f"{prefix}field {self.field!r}: {self.detail}"

    def located(self, where: Location) -> ValidationError:
        """The same error, told where it happened."""
        return ValidationError(self.field, self.reason, self.detail, where)


class DecodeError(RelsecError):
    """Bytes could not be decoded into an event (not JSON, unknown Avro schema, ...)."""

    def __init__(self, reason: str, detail: str, where: Location | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.where = where
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}{detail}")

    def located(self, where: Location) -> DecodeError:
        """The same error, told where it happened."""
        return DecodeError(self.reason, self.detail, where)


class FileError(RelsecError):
    """A file, standard input or standard output could not be opened, read or written.

    ``path`` names it (``<stdin>``, ``<stdout>`` for the streams); ``detail`` says what failed.
    """

    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        self.detail = detail
        super().__init__(f"{path}: {detail}")

    def __reduce__(self) -> tuple[type[FileError], tuple[str, str]]:
        """Pickled by its parts: a parallel replay's shard raises it in another process."""
        return (FileError, (self.path, self.detail))


class StateError(RelsecError):
    """Serialized engine state could not be restored."""


class ConfigError(RelsecError):
    """A setting is missing or has a value relsec cannot use."""

"""The one root exception of relsec and its specific subclasses.

Every error relsec raises on purpose derives from :class:`RelsecError`, so a
caller can catch relsec's failures without catching programming errors. Errors
carry *where* they came from (a field, a file and line, a topic/partition/offset)
so the message can name it.
"""

from __future__ import annotations


class RelsecError(Exception):
    """Root of every error relsec raises on purpose."""


class ValidationError(RelsecError):
    """An event or payload failed validation.

    ``field`` names the offending field (dotted path); ``reason`` is a short
    machine-readable word (``missing``, ``wrong_type``, ``unknown_enum``,
    ``bad_timestamp``, ``too_long``, ``too_short``) and ``detail`` the
    human-readable explanation. ``where`` is filled in by the caller that knows
    the location (a file and line, a topic/partition/offset).
    """

    def __init__(self, field: str, reason: str, detail: str, where: str | None = None) -> None:
        self.field = field
        self.reason = reason
        self.detail = detail
        self.where = where
        super().__init__(self._message())

    def _message(self) -> str:
        prefix = f"{self.where}: " if self.where else ""
        return f"{prefix}field {self.field!r}: {self.detail}"

    def located(self, where: str) -> ValidationError:
        """The same error, told where it happened."""
        return ValidationError(self.field, self.reason, self.detail, where)


class DecodeError(RelsecError):
    """Bytes could not be decoded into an event (not JSON, unknown Avro schema, ...)."""

    def __init__(self, reason: str, detail: str, where: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.where = where
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}{detail}")


class FileError(RelsecError):
    """A file, standard input or standard output could not be opened, read or written.

    ``path`` names it (``<stdin>``, ``<stdout>`` for the streams); ``detail`` says what failed.
    """

    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        self.detail = detail
        super().__init__(f"{path}: {detail}")


class StateError(RelsecError):
    """Serialized engine state could not be restored."""


class ConfigError(RelsecError):
    """A setting is missing or has a value relsec cannot use."""


class CatalogError(ConfigError):
    """The service catalog (Backstage entity files, SPEC §8) cannot be used.

    ``problems`` lists every problem found, each naming its file and document
    (``catalog/checkout.yaml, document 2``) and, for a conflict, both components.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        head = self.problems[0] if self.problems else "unusable service catalog"
        more = f" (and {len(self.problems) - 1} more problem(s))" if len(self.problems) > 1 else ""
        super().__init__(f"service catalog: {head}{more}")


class KafkaProvisionError(RelsecError):
    """The local Apache Kafka could not be provisioned, started or stopped."""


class PrivateDirError(KafkaProvisionError):
    """A state or cache directory of the local Kafka cannot be made private to the user.

    ``path`` is the directory: another user owns it, it is not a directory, or its mode
    could not be changed. It holds Kafka data, configuration (possibly passwords) and logs.
    """

    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        self.detail = detail
        super().__init__(f"{path}: {detail}")


class TopicError(RelsecError):
    """Topics are missing or misconfigured (for example, inputs not co-partitioned)."""


class AdapterError(RelsecError):
    """A tool payload could not be turned into relsec events.

    ``path`` is the JSON path (``$.deployment_status.state``) that was missing or wrong.
    """

    def __init__(self, source: str, path: str, detail: str) -> None:
        self.source = source
        self.path = path
        self.detail = detail
        super().__init__(f"{source} payload: {path}: {detail}")


class DeliveryError(RelsecError):
    """An alert could not be delivered to a notification destination."""

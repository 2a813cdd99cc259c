"""The errors of the ingest adapters and the gateway, under relsec's root.

An :class:`AdapterError` keeps the JSON path it names as a value in ``where`` (a
:class:`~agents.errors.JsonPath` such as ``$.deployment_status.state``, or text for
a value the adapter derives, such as ``service``).
"""

from __future__ import annotations

from agents.errors import JsonPath, RelsecError


class AdapterError(RelsecError):
    """A tool payload could not be turned into relsec events.

    ``where`` is the JSON path that was missing or wrong, as a value (a
    :class:`JsonPath`; text given is kept as one when it is one, else as text, such as
    ``service`` for a value the adapter derives); ``path`` is its text
    (``$.deployment_status.state``), which the message and the HTTP answers show.
    """

    def __init__(self, source: str, path: JsonPath | str, detail: str) -> None:
        self.source = source
        self.where: JsonPath | str = JsonPath.of(path) if isinstance(path, str) else path
        self.path = str(self.where)
        self.detail = detail
        super().__init__(f"{source} payload: {self.path}: {detail}")


class UnsupportedContent(AdapterError):
    """The body is in a format or content type relsec does not read (HTTP 415)."""


class ConversionFailed(AdapterError):
    """An adapter error told against the request body, with the batch index when there is one."""

    def __init__(self, error: AdapterError, index: int | None, status: int = 400) -> None:
        super().__init__(error.source, error.where, error.detail)
        self.index = index
        self.status = status


class SignatureError(RelsecError):
    """A request is unsigned, badly signed or carries a wrong token (HTTP 401)."""

    def __init__(self, source: str, detail: str) -> None:
        self.source = source
        self.detail = detail
        super().__init__(f"{source}: {detail}")


class PublishFailed(RelsecError):
    """The events of a request could not all be written to Kafka."""

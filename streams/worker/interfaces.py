"""What the checkpoints are driven through: a producer and the changelog's records.

:class:`RecordProducer` is the part of a confluent-kafka ``Producer`` the checkpoints
and :func:`~streams.worker.delivery.send` call, so they can be driven by a fake in
tests; :class:`TransactionalProducer` adds the transaction calls of
``--exactly-once``; :class:`ChangelogRecords` is the in-memory view of the changelog
the checkpoints write through. Protocols only, and not compiled although the modules
using them are: a compiled protocol evaluates its ``...`` defaults as values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

OnDelivery = Callable[[Any, Any], None]
"""A delivery report callback: ``(error or None, message)``, as confluent-kafka calls it."""


class RecordProducer(Protocol):
    """What the worker asks of a producer (a confluent-kafka ``Producer`` has it)."""

    def produce(
        self,
        topic: str,
        value: bytes | None = ...,
        key: bytes | None = ...,
        partition: int = ...,
        *,
        on_delivery: OnDelivery | None = ...,
    ) -> None: ...

    def poll(self, timeout: float = ...) -> int: ...

    def flush(self, timeout: float = ...) -> int: ...

    def __len__(self) -> int: ...


class TransactionalProducer(RecordProducer, Protocol):
    """A transactional confluent-kafka ``Producer``."""

    def begin_transaction(self) -> None: ...

    def commit_transaction(self, timeout: float = ...) -> None: ...

    def abort_transaction(self, timeout: float = ...) -> None: ...

    def send_offsets_to_transaction(
        self, positions: Any, group_metadata: Any, timeout: float = ...
    ) -> None: ...


class ChangelogRecords(Protocol):
    """The in-memory view of the changelog the checkpoints write through."""

    @property
    def topic(self) -> str: ...

    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, partition: int, value: bytes | None) -> None: ...

    def written(self, partition: int, offset: int) -> None: ...

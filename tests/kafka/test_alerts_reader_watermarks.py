"""Reading the end of the alerts topic survives a partition's leader moving."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from agents.errors import RelsecError
from streams.alerts_reader import _high_watermark


class FlakyConsumer:
    """Answers with ``errors`` (one per call) before the watermark."""

    def __init__(self, *errors: int) -> None:
        self.errors = list(errors)
        self.calls = 0

    def get_watermark_offsets(self, partition: Any, timeout: float) -> tuple[int, int]:
        self.calls += 1
        if self.errors:
            raise KafkaException(KafkaError(self.errors.pop(0)))
        return 0, 42


def test_a_moving_leader_is_asked_again() -> None:
    consumer = FlakyConsumer(KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE)
    assert _high_watermark(consumer, TopicPartition("alerts", 3), 5.0) == 42
    assert consumer.calls == 3


def test_a_lasting_error_is_reported_with_its_partition() -> None:
    consumer = FlakyConsumer(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(RelsecError, match=r"alerts \[3\]"):
        _high_watermark(consumer, TopicPartition("alerts", 3), 5.0)
    assert consumer.calls == 1


def test_a_transient_error_past_the_deadline_is_reported() -> None:
    consumer = FlakyConsumer(*[KafkaError.NOT_LEADER_FOR_PARTITION] * 100)
    with pytest.raises(RelsecError, match=r"(?i)not.leader"):
        _high_watermark(consumer, TopicPartition("alerts", 0), 0.3)
    assert 2 <= consumer.calls < 100

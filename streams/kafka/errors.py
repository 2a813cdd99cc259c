"""The errors of relsec's Kafka topics, under relsec's root."""

from __future__ import annotations

from agents.errors import RelsecError


class TopicError(RelsecError):
    """Topics are missing or misconfigured (for example, inputs not co-partitioned)."""

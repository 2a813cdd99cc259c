"""Typed values for relsec's input events and output alerts."""

from agents.model.alerts import Alert, Evidence, Recommendation
from agents.model.events import (
    Deploy,
    Event,
    Incident,
    SecurityFlag,
    event_to_dict,
    order_key,
    parse_event,
)

__all__ = [
    "Alert",
    "Deploy",
    "Event",
    "Evidence",
    "Incident",
    "Recommendation",
    "SecurityFlag",
    "event_to_dict",
    "order_key",
    "parse_event",
]

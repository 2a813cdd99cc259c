"""Typed values for relsec's input events and output alerts.

The modules of this package and of :mod:`agents.engine` are compiled with mypyc where the
install could (``setup.py``); ``RELSEC_PURE_PYTHON=1`` runs their ``.py`` sources instead
(:mod:`agents.model._pure`, imported first for that).
"""

import agents.model._pure  # noqa: F401 - first: it chooses the build of what follows
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

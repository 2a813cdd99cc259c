"""The errors of alert delivery, under relsec's root."""

from __future__ import annotations

from agents.errors import RelsecError


class DeliveryError(RelsecError):
    """An alert could not be delivered to a notification destination."""

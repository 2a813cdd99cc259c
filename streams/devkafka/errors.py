"""The errors of the local Apache Kafka provisioner (a development tool), under relsec's root."""

from __future__ import annotations

from agents.errors import RelsecError


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

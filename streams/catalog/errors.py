"""The errors of the service catalog (SPEC §8), under relsec's root."""

from __future__ import annotations

from agents.errors import ConfigError


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

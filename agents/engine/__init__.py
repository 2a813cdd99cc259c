"""The pure correlation engine: no Kafka, no Faust, no Avro, no wall clock.

:class:`~agents.engine.core.Engine` takes validated events one at a time or in batches
(with the caller's clock reading) and returns what became of each: applied, a
duplicate, or a dead letter (late, future), plus the alert events to emit.
:class:`~agents.engine.dedup.DuplicateFilter` is the duplicate window for input read in
arrival order outside an engine (sorted replay).

Compiled with mypyc where the install could; see :mod:`agents.model._pure`.
"""

import agents.model._pure  # noqa: F401 - first: it chooses the build of what follows
from agents.engine.core import (
    Disposition,
    Engine,
    EngineConfig,
    Outcome,
    ServiceEngine,
    future_outcome,
)
from agents.engine.dedup import DuplicateFilter

__all__ = [
    "Disposition",
    "DuplicateFilter",
    "Engine",
    "EngineConfig",
    "Outcome",
    "ServiceEngine",
    "future_outcome",
]

"""The pure correlation engine: no Kafka, no Faust, no Avro, no wall clock.

:class:`~agents.engine.core.Engine` takes validated events one at a time (with
the caller's clock reading) and returns what became of each: applied, a
duplicate, or a dead letter (late, future), plus the alert events to emit.
"""

from agents.engine.core import (
    Disposition,
    Engine,
    EngineConfig,
    Outcome,
    ServiceEngine,
)

__all__ = ["Disposition", "Engine", "EngineConfig", "Outcome", "ServiceEngine"]

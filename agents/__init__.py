"""relsec's correlation logic, pure: the event and alert model and the rules engine.

``agents.model`` is what events and alerts are (SPEC §1, §4); ``agents.engine`` decides
(SPEC §2, §3), with the clock passed in and state that serializes to bytes. Nothing
here knows Kafka, Faust or Avro: the stream agents that feed the engine from Kafka
are the worker in :mod:`streams.worker`, which imports this package (never the other
way round).
"""

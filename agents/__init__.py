"""relsec's correlation logic: the event model, the pure rules engine, and the stream agents that drive it."""

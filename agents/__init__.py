"""relsec's correlation logic: the event model, the pure rules engine, the stream agents."""

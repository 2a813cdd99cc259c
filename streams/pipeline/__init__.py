"""The stream processor: event-time merge of the co-partitioned inputs, the engine, the outputs."""

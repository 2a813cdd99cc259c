"""Engine tests: one module per SPEC §3 rule, properties, and the event factory they share."""

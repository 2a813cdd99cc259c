"""relsec's Avro schemas (``*.avsc`` beside this file) and a loader for them."""

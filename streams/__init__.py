"""What moves relsec's events: settings, topics, codecs, the Kafka edges and the CLI."""

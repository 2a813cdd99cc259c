"""Kafka plumbing: client configurations, topic creation and a local Apache Kafka (KRaft).

``clients`` builds confluent-kafka / aiokafka settings from :class:`streams.settings.Settings`;
``topics`` creates relsec's topics; ``local`` provisions and runs Apache Kafka on 127.0.0.1 for
development, tests and CI.
"""

"""Kafka plumbing of the product: client configurations and topic creation.

``clients`` builds confluent-kafka / aiokafka settings from :class:`streams.settings.Settings`;
``topics`` creates relsec's topics. The local Apache Kafka for development, tests and CI is
:mod:`streams.devkafka`.
"""

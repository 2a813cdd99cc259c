"""The previous version (v0) of each relsec Avro schema, kept to prove compatibility.

Each ``<name>.v0.avsc`` is the schema one version before the one beside
``schemas/__init__.py``. Readers keep knowing these fingerprints, and the tests
check the current schemas are backward and forward compatible with them.
"""

"""The older versions of each relsec Avro schema, kept so their records still decode.

``<name>.v<N>.avsc`` is version N of schema ``name``; ``schemas.KEPT_VERSIONS``
lists them. Readers know all of their fingerprints, and the tests check every
current schema is backward and forward compatible with each of them.
"""

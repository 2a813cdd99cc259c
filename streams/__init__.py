"""What moves relsec's events: settings, topics, codecs, the Kafka edges and the CLI.

Some of its modules are compiled with the engine (:data:`agents.model._pure.MODULES`), so
the build switch is imported first, before any of them.
"""

import agents.model._pure  # noqa: F401 - first: it chooses the build of what follows

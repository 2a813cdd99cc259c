"""``relsec api``: a read model of the worker's state, the check, and the timeline page.

* :mod:`streams.api.changelog` decodes the worker's state changelog records (the one
  place that imports the changelog record format);
* :mod:`streams.api.source` follows the changelog, the alerts topic and the input topics
  with its own consumer (no consumer group, no commits) and feeds the read model;
* :mod:`streams.api.readmodel` keeps per service what the answers need and builds the
  status answer;
* :mod:`streams.api.policy` and :mod:`streams.api.check` give a verdict for a change
  about to happen, by the engine's own rules (``ServiceEngine.preview``);
* :mod:`streams.api.history` keeps each service's events for the timeline page;
* :mod:`streams.api.github` and :mod:`streams.api.gatekeeper` are the integrations;
* :mod:`streams.api.server` is the HTTP server (aiohttp).
"""

"""``relsec notify``: deliver alerts from the alerts topic to PagerDuty, Slack and webhooks.

* :mod:`streams.notify.config` -- the TOML config file (destinations, audiences, retry policy);
* :mod:`streams.notify.render` -- pure message rendering per destination type, signatures;
* :mod:`streams.notify.retry` -- backoff with jitter, Retry-After, bounded attempts and time;
* :mod:`streams.notify.deliver` -- routing by audience and HTTP delivery;
* :mod:`streams.notify.sink` -- the Kafka loop with commit-after-delivery and dead letters.
"""

from streams.notify.config import Destination, NotifyConfig, RetryPolicy, load_config, parse_config
from streams.notify.deliver import DeliveryResult, Notifier, build_request, route
from streams.notify.sink import NotifyReport, NotifySink, notify_group

__all__ = [
    "DeliveryResult",
    "Destination",
    "Notifier",
    "NotifyConfig",
    "NotifyReport",
    "NotifySink",
    "RetryPolicy",
    "build_request",
    "load_config",
    "notify_group",
    "parse_config",
    "route",
]

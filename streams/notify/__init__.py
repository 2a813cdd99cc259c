"""``relsec notify``: deliver alerts from the alerts topic to PagerDuty, Slack and webhooks.

* :mod:`streams.notify.config` -- the TOML config file (destinations, audiences, retry
  and grouping policies);
* :mod:`streams.notify.groups` -- alert groups (one page per alert storm): keys in event
  time, what each destination is told, the commit point;
* :mod:`streams.notify.render` -- pure, bounded message rendering per destination type,
  signatures;
* :mod:`streams.notify.retry` -- backoff with jitter, Retry-After, bounded attempts and time;
* :mod:`streams.notify.deliver` -- routing by audience, request spacing and HTTP delivery;
* :mod:`streams.notify.urls` -- URLs shown without their credentials;
* :mod:`streams.notify.sink` -- the Kafka loop: groups rebuilt on start, commit after
  telling, dead letters.
"""

from streams.notify.config import (
    Destination,
    GroupingPolicy,
    NotifyConfig,
    RetryPolicy,
    load_config,
    parse_config,
)
from streams.notify.deliver import (
    DeliveryResult,
    Notifier,
    build_group_request,
    build_request,
    route,
)
from streams.notify.groups import Grouper, GroupKey, GroupSnapshot, group_key
from streams.notify.sink import NotifyReport, NotifySink, notify_group
from streams.notify.urls import safe_origin, safe_url

__all__ = [
    "DeliveryResult",
    "Destination",
    "GroupKey",
    "GroupSnapshot",
    "Grouper",
    "GroupingPolicy",
    "Notifier",
    "NotifyConfig",
    "NotifyReport",
    "NotifySink",
    "RetryPolicy",
    "build_group_request",
    "build_request",
    "group_key",
    "load_config",
    "notify_group",
    "parse_config",
    "route",
    "safe_origin",
    "safe_url",
]

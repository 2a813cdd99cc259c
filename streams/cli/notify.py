"""``relsec notify``: deliver alerts from the alerts topic to PagerDuty, Slack and webhooks."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any, Final

from streams.settings import BOOLEAN, KAFKA_FLAGS, TEXT, Setting, add_flags

NOTIFY_SETTINGS: Final[tuple[Setting[Any], ...]] = (
    *KAFKA_FLAGS,
    Setting(
        "once", BOOLEAN, False, "deliver what is on the topic up to its current end, then exit"
    ),
    Setting(
        "group",
        TEXT,
        None,
        "consumer group",
        metavar="GROUP",
        default_text="the worker's group name + '-notify'",
    ),
    Setting(
        "start_at",
        TEXT,
        "earliest",
        "where a group without committed offsets starts (earliest: no alert is missed; "
        "'latest' skips the topic's history on a first start)",
        choices=("earliest", "latest"),
    ),
    Setting(
        "check", BOOLEAN, False, "load the config, list the destinations (no secrets) and exit"
    ),
    Setting("log_level", TEXT, "INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR")),
)
"""What ``relsec notify`` reads besides its config file (whose secrets name their own
variables, ``url_env`` and the like: docs/notify.md)."""

COMMANDS: Final = {"notify": NOTIFY_SETTINGS}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "notify",
        help="deliver alerts to PagerDuty, Slack and webhooks, routed by audience",
        description="Read the alerts topic and deliver each alert to the destinations of its "
        "audiences (sre, security) listed in a TOML config file, with retries; deliveries "
        "that keep failing go to the dead-letter topic. Offsets are committed only after "
        "every destination of a record was delivered or dead-lettered. See docs/notify.md.",
    )
    p.add_argument("--config", required=True, metavar="FILE", help="notify config file (TOML)")
    add_flags(p, NOTIFY_SETTINGS)
    p.set_defaults(func=run, settings=NOTIFY_SETTINGS)


def run(args: argparse.Namespace) -> int:
    from streams.notify.config import load_config
    from streams.notify.deliver import Notifier
    from streams.notify.sink import NotifySink, notify_group
    from streams.notify.urls import has_credentials
    from streams.settings import Settings

    config = load_config(args.config)
    settings = Settings.from_args(args)
    group = args.group or notify_group(settings)
    if args.check:
        print(f"config {args.config}: {len(config.destinations)} destination(s)")
        for dest in config.destinations:
            mode = "one notice per alert group" if dest.grouped else "every alert"
            spacing = f", {dest.min_interval_ms} ms apart" if dest.min_interval_ms else ""
            print(f"  {dest.describe()}, min severity {dest.min_severity}, {mode}{spacing}")
            if not dest.url_is_secret and has_credentials(dest.url):
                print(
                    f"  warning: {dest.name}: its 'url' carries a credential (user-info, a "
                    "query string or a webhook secret path); move it to 'url_env'"
                )
        g = config.grouping
        if g.enabled:
            print(
                f"grouping: by rule, service, environment, release in {g.window_ms} ms windows "
                f"of event time; sent after {g.settle_ms} ms without change (at most "
                f"{g.max_delay_ms} ms late), updates at most every {g.update_interval_ms} ms, "
                f"forgotten {g.forget_after_ms} ms of event time after their window"
            )
        else:
            print("grouping: off (window_ms = 0): every alert is its own group")
        r = config.retry
        print(
            f"retry: {r.max_attempts} attempts, backoff {r.initial_backoff_ms} ms x{r.multiplier} "
            f"up to {r.max_backoff_ms} ms, jitter {r.jitter_ratio}, budget {r.max_total_ms} ms, "
            f"request timeout {r.request_timeout_ms} ms"
        )
        print(
            f"reads {settings.topics.alerts} as group {group}; "
            f"dead letters to {settings.topics.dlq}"
        )
        return 0

    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("relsec.notify").info("signal %d: stopping", signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    notifier = Notifier(config, stop=stop)
    try:
        for dest in config.destinations:
            logging.getLogger("relsec.notify").info("destination %s", dest.describe())
        sink = NotifySink(settings, notifier, group_id=group, start_at=args.start_at, stop=stop)
        report = sink.run(once=args.once)
    finally:
        notifier.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    print(report.line(), file=sys.stderr)
    return 0

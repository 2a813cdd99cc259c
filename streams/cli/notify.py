"""``relsec notify``: deliver alerts from the alerts topic to PagerDuty, Slack and webhooks."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from streams.cli import add_kafka_options


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
    add_kafka_options(p)
    p.add_argument(
        "--once",
        action="store_true",
        help="deliver what is on the topic up to its current end, then exit",
    )
    p.add_argument(
        "--group",
        default=None,
        metavar="GROUP",
        help="consumer group (default: the worker's group name + '-notify')",
    )
    p.add_argument(
        "--start-at",
        choices=("earliest", "latest"),
        default="earliest",
        help="where a group without committed offsets starts (default: earliest, so no "
        "alert is missed; 'latest' skips the topic's history on a first start)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="load the config, list the destinations (no secrets) and exit",
    )
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streams.notify.config import load_config
    from streams.notify.deliver import Notifier
    from streams.notify.sink import NotifySink, notify_group
    from streams.notify.urls import has_credentials
    from streams.settings import Settings

    config = load_config(args.config)
    settings = Settings.resolve(
        bootstrap_servers=args.bootstrap_servers, topic_prefix=args.topic_prefix
    )
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

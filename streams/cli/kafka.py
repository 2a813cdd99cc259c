"""``relsec kafka up|down|status`` (a local Apache Kafka) and ``relsec topics create``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Final

from streams.devkafka import (
    DEFAULT_KAFKA_VERSION,
    LocalKafka,
    as_dict,
    default_state_dir,
    describe,
)
from streams.settings import (
    BOOLEAN,
    DEFAULT_PARTITIONS,
    INTEGER,
    KAFKA_FLAGS,
    NUMBER,
    TEXT,
    Setting,
    add_flags,
    at_least,
    not_empty,
)


def _stderr(message: str) -> None:
    print(f"relsec: {message}", file=sys.stderr, flush=True)


STATE_SETTINGS: Final[tuple[Setting[Any], ...]] = (
    Setting(
        "state_dir",
        TEXT,
        None,
        "where the cluster's config, data, logs and PIDs live",
        default_text="$RELSEC_CACHE_DIR/run/NAME, i.e. ~/.cache/relsec/run/NAME",
    ),
    Setting("name", TEXT, "local", "cluster name, for the default --state-dir", check=not_empty),
)
UP_SETTINGS: Final[tuple[Setting[Any], ...]] = (
    *STATE_SETTINGS,
    Setting("brokers", INTEGER, None, "number of nodes", default_text="1", check=at_least(1)),
    Setting(
        "port",
        INTEGER,
        None,
        "first broker port; node i listens on PORT+i, its controller on PORT+BROKERS+i",
        default_text="9092",
        check=at_least(0),
    ),
    Setting(
        "kafka_version",
        TEXT,
        DEFAULT_KAFKA_VERSION,
        "Apache Kafka version to fetch",
        check=not_empty,
    ),
    Setting("timeout", NUMBER, 120.0, "seconds to wait for readiness", check=at_least(0)),
)
DOWN_SETTINGS: Final[tuple[Setting[Any], ...]] = (
    *STATE_SETTINGS,
    Setting("purge", BOOLEAN, False, "also delete the state directory (all data)"),
    Setting("timeout", NUMBER, 30.0, "seconds before SIGKILL", check=at_least(0)),
)
STATUS_SETTINGS: Final[tuple[Setting[Any], ...]] = (
    *STATE_SETTINGS,
    Setting("json", BOOLEAN, False, "print JSON"),
)
TOPICS_CREATE_SETTINGS: Final[tuple[Setting[Any], ...]] = (
    *KAFKA_FLAGS,
    Setting(
        "partitions",
        INTEGER,
        DEFAULT_PARTITIONS,
        "partitions per topic (the inputs share it)",
        check=at_least(1),
    ),
    Setting(
        "replication_factor",
        INTEGER,
        None,
        "replicas per partition",
        default_text="min(3, number of brokers)",
        check=at_least(1),
    ),
)

COMMANDS: Final = {
    "kafka up": UP_SETTINGS,
    "kafka down": DOWN_SETTINGS,
    "kafka status": STATUS_SETTINGS,
    "topics create": TOPICS_CREATE_SETTINGS,
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    kafka = sub.add_parser(
        "kafka",
        help="start / stop a local Apache Kafka (KRaft) on 127.0.0.1 for development",
        description="A local Apache Kafka in KRaft combined mode, listening on 127.0.0.1 only. "
        "Kafka comes from $KAFKA_HOME, else Maven Central (cached in ~/.cache/relsec).",
    )
    ksub = kafka.add_subparsers(dest="kafka_command", metavar="ACTION", required=True)

    up = ksub.add_parser(
        "up",
        help="start the local cluster (idempotent); print the bootstrap address",
        description="Start (or keep running) a local Apache Kafka and wait until it answers a "
        "metadata request; the bootstrap address is printed on stdout.",
    )
    add_flags(up, UP_SETTINGS)
    up.set_defaults(func=run_up, settings=UP_SETTINGS)

    down = ksub.add_parser(
        "down",
        help="stop the local cluster (the recorded PIDs only)",
        description="Stop the nodes whose PIDs are recorded in the state directory: SIGTERM, "
        "then SIGKILL after --timeout seconds.",
    )
    add_flags(down, DOWN_SETTINGS)
    down.set_defaults(func=run_down, settings=DOWN_SETTINGS)

    status = ksub.add_parser("status", help="show the local cluster's nodes and readiness")
    add_flags(status, STATUS_SETTINGS)
    status.set_defaults(func=run_status, settings=STATUS_SETTINGS)

    topics = sub.add_parser(
        "topics",
        help="manage relsec's Kafka topics",
        description="Manage the input, alert and dead-letter topics (SPEC §7).",
    )
    tsub = topics.add_subparsers(dest="topics_command", metavar="ACTION", required=True)
    create = tsub.add_parser(
        "create",
        help="create the input, alert and dead-letter topics (idempotent)",
        description="Create the missing relsec topics. Inputs are co-partitioned; alerts are "
        "compacted; replication is min(3, brokers) unless given.",
    )
    add_flags(create, TOPICS_CREATE_SETTINGS)
    create.set_defaults(func=run_topics_create, settings=TOPICS_CREATE_SETTINGS)


def _cluster(args: argparse.Namespace, **kwargs: Any) -> LocalKafka:
    state_dir = Path(args.state_dir) if args.state_dir else default_state_dir(args.name)
    return LocalKafka(state_dir, log=_stderr, **kwargs)


def run_up(args: argparse.Namespace) -> int:
    cluster = _cluster(
        args,
        brokers=args.brokers,
        port=args.port,
        version=args.kafka_version,
    )
    bootstrap = cluster.up(timeout_s=args.timeout)
    _stderr(f"Kafka ready; state in {cluster.state_dir}")
    _stderr(f"export RELSEC_BOOTSTRAP_SERVERS={bootstrap}")
    print(bootstrap, flush=True)
    return 0


def run_down(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    stopped = cluster.down(timeout_s=args.timeout, purge=args.purge)
    if stopped:
        _stderr(f"stopped pid {', '.join(map(str, stopped))}")
    else:
        _stderr(f"no running Kafka recorded in {cluster.state_dir}")
    if args.purge:
        _stderr(f"deleted {cluster.state_dir}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    status = cluster.status()
    if args.json:
        print(json.dumps(as_dict(status), indent=2))
    else:
        describe(status, sys.stdout)
    return 0 if status.ready else 1


def run_topics_create(args: argparse.Namespace) -> int:
    from streams.kafka.topics import ensure_topics
    from streams.settings import Settings

    settings = Settings.from_args(args)
    states = ensure_topics(settings, args.partitions, args.replication_factor)
    for state in states:
        what = "created" if state.created else "exists "
        print(
            f"{what} {state.name}  partitions={state.partitions} "
            f"replication={state.replication_factor}"
        )
    return 0

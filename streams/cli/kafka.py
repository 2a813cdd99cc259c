"""``relsec kafka up|down|status`` (a local Apache Kafka) and ``relsec topics create``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from agents.errors import KafkaProvisionError
from streams.devkafka import (
    DEFAULT_KAFKA_VERSION,
    LocalKafka,
    as_dict,
    default_state_dir,
    describe,
)


def _stderr(message: str) -> None:
    print(f"relsec: {message}", file=sys.stderr, flush=True)


def _add_state_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where the cluster's config, data, logs and PIDs live "
        "(default: $RELSEC_CACHE_DIR/run/NAME, i.e. ~/.cache/relsec/run/NAME)",
    )
    parser.add_argument(
        "--name", default="local", help="cluster name, for the default --state-dir (default: local)"
    )


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
    _add_state_options(up)
    up.add_argument("--brokers", type=int, default=None, help="number of nodes (default 1)")
    up.add_argument(
        "--port",
        type=int,
        default=None,
        help="first broker port (default 9092); node i listens on PORT+i, its controller on "
        "PORT+BROKERS+i",
    )
    up.add_argument(
        "--kafka-version", default=None, help="Apache Kafka version to fetch (default 4.4.0)"
    )
    up.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for readiness (default 120)"
    )
    up.set_defaults(func=run_up)

    down = ksub.add_parser(
        "down",
        help="stop the local cluster (the recorded PIDs only)",
        description="Stop the nodes whose PIDs are recorded in the state directory: SIGTERM, "
        "then SIGKILL after --timeout seconds.",
    )
    _add_state_options(down)
    down.add_argument(
        "--purge", action="store_true", help="also delete the state directory (all data)"
    )
    down.add_argument("--timeout", type=float, default=30.0, help="seconds before SIGKILL")
    down.set_defaults(func=run_down)

    status = ksub.add_parser("status", help="show the local cluster's nodes and readiness")
    _add_state_options(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=run_status)

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
    from streams.cli import add_kafka_options

    add_kafka_options(create)
    from streams.settings import DEFAULT_PARTITIONS

    create.add_argument(
        "--partitions",
        type=int,
        default=DEFAULT_PARTITIONS,
        help=f"partitions per topic ({DEFAULT_PARTITIONS})",
    )
    create.add_argument(
        "--replication-factor",
        type=int,
        default=None,
        help="replicas per partition (default: min(3, number of brokers))",
    )
    create.set_defaults(func=run_topics_create)


def _cluster(args: argparse.Namespace, **kwargs: Any) -> LocalKafka:
    state_dir = args.state_dir or default_state_dir(args.name)
    return LocalKafka(state_dir, log=_stderr, **kwargs)


def run_up(args: argparse.Namespace) -> int:
    if args.brokers is not None and args.brokers < 1:
        raise KafkaProvisionError("--brokers must be at least 1")
    cluster = _cluster(
        args,
        brokers=args.brokers,
        port=args.port,
        version=args.kafka_version or DEFAULT_KAFKA_VERSION,
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

    settings = Settings.resolve(
        bootstrap_servers=args.bootstrap_servers, topic_prefix=args.topic_prefix
    )
    states = ensure_topics(settings, args.partitions, args.replication_factor)
    for state in states:
        what = "created" if state.created else "exists "
        print(
            f"{what} {state.name}  partitions={state.partitions} "
            f"replication={state.replication_factor}"
        )
    return 0

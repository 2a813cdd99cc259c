"""``relsec worker``, ``relsec publish``, ``relsec alerts`` and ``relsec demo``."""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import orjson

from agents.errors import RelsecError
from agents.model.events import Deploy, Event
from streams.cli import add_kafka_options
from streams.settings import Settings

SEED_STORY = Path(__file__).resolve().parent.parent / "data" / "seed-story.jsonl"


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.resolve(
        bootstrap_servers=args.bootstrap_servers,
        topic_prefix=args.topic_prefix,
        allowed_lateness=getattr(args, "allowed_lateness", None),
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    w = sub.add_parser(
        "worker",
        help="run the stream processor (alerts from the input topics)",
        description="Run the stream worker. Every option can also be set by the environment "
        "variable its help names (a flag wins over the variable).",
    )
    from streams.settings import ALLOWED_LATENESS, KAFKA_FLAGS, add_flags
    from streams.worker.options import WORKER_SETTINGS

    add_flags(w, (*KAFKA_FLAGS, ALLOWED_LATENESS, *WORKER_SETTINGS))
    w.set_defaults(func=run_worker)

    p = sub.add_parser("publish", help="publish JSONL events to the input topics")
    add_kafka_options(p)
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--strict", action="store_true", help="exit 1 when any line was invalid")
    p.set_defaults(func=run_publish)

    a = sub.add_parser(
        "alerts", help="print the alerts topic as JSON lines (to its end, or --follow)"
    )
    add_kafka_options(a)
    a.add_argument("--follow", action="store_true", help="keep printing new alerts")
    a.add_argument("--format", choices=("json", "ocsf"), default="json")
    a.add_argument(
        "--active",
        action="store_true",
        help="print only the final active set (last record per alert, no retracted)",
    )
    a.set_defaults(func=run_alerts)

    d = sub.add_parser(
        "demo", help="from nothing to alerts: local Kafka, topics, worker, the seed story"
    )
    add_kafka_options(d)
    d.add_argument(
        "--file", default=str(SEED_STORY), help="events to publish (default: the seed story)"
    )
    d.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the alerts")
    d.add_argument(
        "--keep",
        action="store_true",
        help="keep the stack (Kafka, the worker, relsec api) up after the story, print the "
        "timeline's URL and a relsec check to try, until Ctrl-C",
    )
    d.add_argument(
        "--api-port",
        type=int,
        default=8088,
        help="port of the demo's relsec api (default 8088, the port relsec check asks; a "
        "free one if it is taken)",
    )
    d.set_defaults(func=run_demo)


# -- worker --------------------------------------------------------------------


def _wait_for_inputs(settings: Settings, wait_s: float) -> int:
    """The input topics' common partition count, waiting up to ``wait_s`` for them to exist
    (on a first install the topics are often created alongside the worker)."""
    from agents.errors import TopicError
    from streams.kafka.topics import input_partitions

    deadline = time.monotonic() + wait_s
    while True:
        try:
            return input_partitions(settings)
        except TopicError as exc:
            if time.monotonic() >= deadline or "not co-partitioned" in str(exc):
                raise
            print(f"relsec worker: waiting for topics: {exc}", file=sys.stderr)
            time.sleep(2.0)


def run_worker(args: argparse.Namespace) -> int:
    import logging

    from streams.settings import resolve
    from streams.worker import WorkerOptions
    from streams.worker import run_worker as run
    from streams.worker.options import WORKER_SETTINGS

    settings = Settings.from_args(args)
    values = resolve(WORKER_SETTINGS, args)
    partitions = _wait_for_inputs(settings, values["wait_for_topics_s"])
    if values["replication_factor"] is None:
        from confluent_kafka.admin import AdminClient

        from streams.kafka.clients import admin_config

        brokers = len(AdminClient(admin_config(settings)).list_topics(timeout=10).brokers)
        values["replication_factor"] = max(1, min(3, brokers))
    options = WorkerOptions.from_values(values, partitions)
    print(
        f"relsec worker: group {settings.topics.consumer_group} on {settings.bootstrap_servers}, "
        f"{partitions} partitions, {options.runtime} runtime, metrics on "
        f"http://{options.web_host}:{options.web_port}/metrics",
        file=sys.stderr,
    )
    if options.runtime == "kafka":
        logging.basicConfig(
            level=options.loglevel.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    run(settings, options)
    return 0


# -- publish -------------------------------------------------------------------


def _read_events(paths: list[str], strict_counts: dict[str, int]) -> list[Event]:
    from streams.replay import DeadLetter, decode_line, read_lines

    events: list[Event] = []
    for line in read_lines(paths):
        strict_counts["read"] += 1
        decoded = decode_line(line)
        if isinstance(decoded, DeadLetter):
            strict_counts["invalid"] += 1
            print(f"relsec publish: {decoded.message()}", file=sys.stderr)
        else:
            events.append(decoded)
    return events


def run_publish(args: argparse.Namespace) -> int:
    from streams.publish import publish_events

    settings = _settings(args)
    counts = {"read": 0, "invalid": 0}
    events = _read_events(args.files, counts)
    report = publish_events(settings, events)
    for event_id, reason in report.failed:
        print(f"relsec publish: event {event_id}: not delivered: {reason}", file=sys.stderr)
    print(
        f"relsec publish: read={counts['read']} invalid={counts['invalid']} "
        f"delivered={report.delivered} failed={len(report.failed)}",
        file=sys.stderr,
    )
    if report.failed:
        return 1
    return 1 if args.strict and counts["invalid"] else 0


# -- alerts --------------------------------------------------------------------


def run_alerts(args: argparse.Namespace) -> int:
    from streams.alerts_reader import active_alerts, read_alerts
    from streams.ocsf import alert_to_ocsf

    settings = _settings(args)
    out = sys.stdout.buffer
    stream = read_alerts(settings, follow=args.follow)
    alerts: Any = active_alerts(stream).values() if args.active and not args.follow else stream
    for alert in alerts:
        doc = alert_to_ocsf(alert) if args.format == "ocsf" else alert
        out.write(orjson.dumps(doc))
        out.write(b"\n")
        if args.follow:
            out.flush()
    return 0


# -- demo ----------------------------------------------------------------------


def _say(message: str) -> None:
    print(f"relsec demo: {message}", file=sys.stderr, flush=True)


def _expected_alerts(path: str) -> dict[str, dict[str, Any]]:
    """What replay says the events must produce (the demo checks Kafka against it)."""
    from streams.replay import Replayer, make_engine, read_lines, replay_sorted

    expected: dict[str, dict[str, Any]] = {}

    def keep(alert: Any) -> None:
        expected[alert.alert_id] = alert.to_dict()

    replayer = Replayer(
        make_engine(False, 0), lambda: time.time_ns() // 1_000_000, keep, lambda _: None
    )
    replay_sorted(read_lines([path]), replayer)
    return expected


def render_table(alerts: list[dict[str, Any]]) -> str:
    rows = [("SEVERITY", "RULE", "WHERE", "RELEASE", "RECOMMENDATION")]
    order = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}
    for a in sorted(alerts, key=lambda a: (a["occurred_at"], order[a["severity"]], a["rule"])):
        rec = a.get("recommendation")
        if rec is None:
            advice = "-"
        elif rec["release"]:
            advice = f"move to {rec['release']}"
        else:
            advice = "coordinate a roll-forward fix"
        rows.append(
            (a["severity"], a["rule"], f"{a['service']}/{a['environment']}", a["release"], advice)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    out = "\n".join(lines)
    summaries = "\n".join(f"  * {a['summary']}" for a in alerts)
    return f"{out}\n\n{summaries}"


def _port_or_free(port: int) -> int:
    """``port`` if nothing listens on it on 127.0.0.1, else a free one."""
    import socket

    from streams.devkafka import pick_free_ports

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return pick_free_ports(1)[0]
    return port


def _wait_for_producer_ids(settings: Settings, timeout_s: float = 60.0) -> None:
    """Wait until the broker hands out producer ids (a fresh KRaft broker answers
    "coordinator load in progress" at first, and librdkafka would print that retry in
    the middle of the story): one transactional init, its log kept off the screen."""
    import logging

    from confluent_kafka import KafkaException, Producer

    from streams.kafka.clients import producer_config

    quiet = logging.getLogger("relsec.demo.librdkafka")
    quiet.propagate = False
    if not quiet.handlers:
        quiet.addHandler(logging.NullHandler())
    producer = Producer(
        producer_config(
            settings,
            **{"transactional.id": f"{settings.topics.prefix}demo-warm-up", "logger": quiet},
        )
    )
    try:
        producer.init_transactions(timeout_s)
    except KafkaException as exc:
        raise RelsecError(f"the broker hands out no producer ids: {exc}") from None


def _wait_http_ok(
    url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float
) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RelsecError(f"relsec api exited with {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise RelsecError(f"relsec api not ready in {timeout_s:.0f} s; see {log_path}")


def _denied_rollback(events: list[Event], api_url: str) -> tuple[Event, dict[str, Any]] | None:
    """The story's rollback the API denies now (or the last rollback's verdict), if any."""
    import asyncio

    from streams.cli.api import Unavailable, fetch_verdict

    rollbacks = [e for e in events if isinstance(e, Deploy) and e.action == "rollback"]
    found: tuple[Event, dict[str, Any]] | None = None
    for event in reversed(rollbacks):
        assert isinstance(event, Deploy)
        params = {
            "service": event.service,
            "environment": event.environment,
            "release": event.release,
            "action": "rollback",
        }
        try:
            answer = asyncio.run(fetch_verdict(api_url, params, None, 15.0))
        except Unavailable as exc:
            raise RelsecError(f"relsec check got no verdict: {exc}") from None
        found = (event, answer)
        if answer["verdict"] == "deny":
            break
    return found


def _stop_process(proc: subprocess.Popen[bytes] | None, name: str) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _say(f"{name} stopped")


def _wait_for_interrupt() -> None:
    """Until Ctrl-C or SIGTERM."""
    stop = {"now": False}

    def handler(_signum: int, _frame: Any) -> None:
        stop["now"] = True

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        while not stop["now"]:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_demo(args: argparse.Namespace) -> int:
    """From nothing to alerts, then the check that would have stopped the rollback.

    Kafka, topics, a worker and ``relsec api`` come up (the worker's and the API's
    output go to log files: the screen keeps to the story), the seed story is
    published, the alerts are shown as ``relsec replay`` computes them, and the API is
    asked what ``relsec check`` would have said before the story's rollback. With
    ``--keep`` the stack stays up, with the timeline's URL and the check to try, until
    Ctrl-C; then everything the demo started is stopped.
    """
    from streams.alerts_reader import active_alerts, read_alerts
    from streams.api.check import verdict_text
    from streams.devkafka import LocalKafka, default_state_dir, pick_free_ports
    from streams.kafka.topics import create_topics
    from streams.publish import publish_events
    from streams.replay import decode_line, read_lines

    expected = _expected_alerts(args.file)
    kafka: LocalKafka | None = None
    worker: subprocess.Popen[bytes] | None = None
    api: subprocess.Popen[bytes] | None = None
    state_dir = default_state_dir("demo")
    stack = contextlib.ExitStack()
    try:
        if args.bootstrap_servers or os.environ.get("RELSEC_BOOTSTRAP_SERVERS"):
            bootstrap = args.bootstrap_servers or os.environ["RELSEC_BOOTSTRAP_SERVERS"]
            _say(f"using Kafka at {bootstrap}")
        else:
            _say(
                "starting a local Apache Kafka (KRaft) on 127.0.0.1 "
                "(the first run downloads it from Maven Central)"
            )
            kafka = LocalKafka(state_dir, brokers=1, port=pick_free_ports(1)[0], log=_say)
            bootstrap = kafka.up()
            _say(f"Kafka ready at {bootstrap}")
        prefix = args.topic_prefix or f"relsec-demo-{int(time.time())}."
        settings = Settings.resolve(bootstrap_servers=bootstrap, topic_prefix=prefix)
        create_topics(settings, partitions=3)
        _say(f"topics created under prefix {prefix!r}")
        web_port = pick_free_ports(1)[0]
        log_dir = Path(state_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / "worker.log"
        worker_log = stack.enter_context(log_path.open("wb"))
        common = ["--bootstrap-servers", bootstrap, "--topic-prefix", prefix]
        worker = subprocess.Popen(
            [
                sys.executable, "-m", "streams.cli", "worker", *common,
                "--web-port", str(web_port), "--loglevel", "warning",
            ],
            stdout=worker_log,
            stderr=subprocess.STDOUT,
        )
        _say(f"worker started (pid {worker.pid}, log {log_path})")
        api_port = _port_or_free(args.api_port)
        api_url = f"http://127.0.0.1:{api_port}"
        api_log_path = log_dir / "api.log"
        api_log = stack.enter_context(api_log_path.open("wb"))
        api_env = {k: v for k, v in os.environ.items() if k != "RELSEC_API_TOKEN"}
        api = subprocess.Popen(
            [
                sys.executable, "-m", "streams.cli", "api", *common,
                "--host", "127.0.0.1", "--port", str(api_port),
            ],
            stdout=api_log,
            stderr=subprocess.STDOUT,
            env=api_env,
        )
        _say(f"relsec api started on {api_url} (pid {api.pid}, log {api_log_path})")
        _wait_for_producer_ids(settings)
        with open(args.file, "rb") as handle:
            count = sum(1 for line in handle if line.strip())
        events = [
            e
            for e in (decode_line(line) for line in read_lines([args.file]))
            if isinstance(e, Event)
        ]
        report = publish_events(settings, events)
        if not report.ok:
            raise RelsecError(f"publishing failed: {report.failed[:3]}")
        _say(f"published {report.delivered} of {count} events from {args.file}")
        deadline = time.monotonic() + args.timeout
        active: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            if worker.poll() is not None:
                raise RelsecError(f"the worker exited with {worker.returncode}; see {log_path}")
            active = active_alerts(read_alerts(settings))
            if set(active) == set(expected):
                break
            _say(f"waiting for alerts: {len(active)} of {len(expected)}")
            time.sleep(1.0)
        else:
            raise RelsecError(
                f"only {len(active)} of {len(expected)} alerts arrived in "
                f"{args.timeout:.0f} s; see {log_path}"
            )
        print(render_table(list(active.values())))
        _say(
            f"{len(active)} alerts on {settings.topics.alerts}, "
            "the same set `relsec replay` computes"
        )
        _wait_http_ok(f"{api_url}/healthz", api, api_log_path, max(30.0, args.timeout / 2))
        found = _denied_rollback(events, api_url)
        if found is not None:
            event, answer = found
            assert isinstance(event, Deploy)
            command = (
                f"relsec check {shlex.quote(event.service)} {shlex.quote(event.environment)} "
                f"{shlex.quote(event.release)} --action rollback"
            )
            if api_port != 8088:
                command += f" --api-url {api_url}"
            print(f"\nAsked before making the story's rollback again:  {command}\n")
            print(verdict_text(answer))
            print()
            timeline = f"{api_url}/ui/service?name={urllib.parse.quote(event.service)}"
        else:
            command, timeline = "", f"{api_url}/ui/"
        if not args.keep:
            _say("relsec demo --keep keeps the stack up with the timeline page and the check")
            return 0
        _say(f"the timeline: {timeline}")
        _say(f"all services: {api_url}/ui/")
        if command:
            _say(f"try it: {command}   (exits 2: deny)")
        _say("the stack stays up (Kafka, worker, relsec api); Ctrl-C stops it")
        _wait_for_interrupt()
        return 0
    finally:
        _stop_process(api, "relsec api")
        _stop_process(worker, "worker")
        if kafka is not None:
            kafka.down(purge=True)
            _say("Kafka stopped")
        stack.close()

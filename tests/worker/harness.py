"""Helpers for the pipeline tests: a worker subprocess stopped by PID, and alert comparisons."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from agents.model.events import Event, parse_event
from streams.alerts_reader import active_alerts, read_alerts
from streams.devkafka import pick_free_ports
from streams.replay import Replayer, make_engine, replay_sorted
from streams.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SHARED_SCENARIOS = REPO.parent / "shared" / "scenarios"

# The fields that define an alert apart from when it was detected.
COMPARED = (
    "alert_id",
    "rule",
    "severity",
    "service",
    "environment",
    "release",
    "occurred_at",
    "notify",
    "evidence",
    "recommendation",
    "summary",
)


class WorkerProcess:
    """``relsec worker`` in a subprocess; stopped by its PID, never by name."""

    def __init__(self, settings: Settings, tmp: Path, *extra: str, name: str = "worker") -> None:
        self.name = name
        self.log_path = tmp / f"{name}.log"
        self.data_dir = tmp / f"{name}-data"
        self.web_port = pick_free_ports(1)[0]
        cmd = [
            sys.executable,
            "-m",
            "streams.cli",
            "worker",
            "--bootstrap-servers",
            settings.bootstrap_servers,
            "--topic-prefix",
            settings.topics.prefix,
            "--web-port",
            str(self.web_port),
            "--data-dir",
            str(self.data_dir),
            "--loglevel",
            "info",
            *extra,
        ]
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=tmp)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """A crash: SIGKILL, no chance to commit or flush."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(30)
        self._log.close()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def load_events(path: Path) -> list[Event]:
    return [
        parse_event(orjson.loads(line)) for line in path.read_bytes().splitlines() if line.strip()
    ]


def replay_expected(events: Iterable[Event]) -> dict[str, dict[str, Any]]:
    """The final active alerts `relsec replay` computes for these events."""
    from streams.replay import _Line

    expected: dict[str, dict[str, Any]] = {}
    replayer = Replayer(
        make_engine(False, 0),
        lambda: time.time_ns() // 1_000_000,
        lambda a: expected.__setitem__(a.alert_id, a.to_dict()),
        lambda _: None,
    )

    def lines() -> Iterable[_Line]:
        from agents.model.events import event_to_dict

        for i, e in enumerate(events):
            yield _Line("mem", i + 1, orjson.dumps(event_to_dict(e)))

    replay_sorted(lines(), replayer)
    return expected


def comparable(alerts: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {k: tuple(orjson.dumps(a.get(f)) for f in COMPARED) for k, a in alerts.items()}


def diff_summary(active: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]]) -> str:
    """What differs between two alert sets, for failure messages."""
    got, want = comparable(active), comparable(expected)
    missing = [
        expected[k]["rule"] + "@" + expected[k]["occurred_at"] for k in want.keys() - got.keys()
    ]
    extra = [active[k]["rule"] + "@" + active[k]["occurred_at"] for k in got.keys() - want.keys()]
    changed = [
        f"{k}: " + ", ".join(f for f, a, b in zip(COMPARED, got[k], want[k], strict=True) if a != b)
        for k in want.keys() & got.keys()
        if got[k] != want[k]
    ]
    return (
        f"missing {len(missing)} {missing[:5]}; extra {len(extra)} {extra[:5]}; "
        f"changed {len(changed)} {changed[:5]}"
    )


def pipeline_report(settings: Settings, workers: Iterable[WorkerProcess] = ()) -> str:
    """Where records went, for failure messages: dead letters by reason and partition,
    and each live worker's counts."""
    counts: dict[str, int] = {}
    for dl in dead_letters(settings):
        where = f"{dl['reason']}@{dl['topic']}[{dl['partition']}]"
        counts[where] = counts.get(where, 0) + 1
    lines = [f"dead letters: {dict(sorted(counts.items())) or 'none'}"]
    for w in workers:
        # Partition moves explain counts above one per event (a session that timed out
        # on a starved machine hands work to the other worker, which redoes it).
        moves = [
            line
            for line in w.log_path.read_text(errors="replace").splitlines()
            if "partitions" in line and ("assigned" in line or "lost" in line or "revoked" in line)
        ]
        lines.extend(f"worker {w.name} log: {line}" for line in moves[-6:])
        if not w.alive():
            lines.append(f"worker {w.name}: not running")
            continue
        names = ("relsec_events_applied", "relsec_events_duplicate", "relsec_dead_letters")
        lines.append(f"worker {w.name}: " + ", ".join(f"{n} {metric(w, n):.0f}" for n in names))
    return "\n".join(lines)


def wait_for_alerts(
    settings: Settings,
    expected: dict[str, dict[str, Any]],
    timeout_s: float,
    workers: Iterable[WorkerProcess] = (),
) -> dict[str, dict[str, Any]]:
    """Poll the alerts topic until its active set equals ``expected`` (or time runs out)."""
    deadline = time.monotonic() + timeout_s
    active: dict[str, dict[str, Any]] = {}
    want = comparable(expected)
    while time.monotonic() < deadline:
        for w in workers:
            assert w.alive(), f"worker {w.pid} died:\n{w.log_tail()}"
        active = active_alerts(read_alerts(settings))
        if comparable(active) == want:
            return active
        time.sleep(1.0)
    return active


def all_alert_records(settings: Settings) -> list[dict[str, Any]]:
    return list(read_alerts(settings))


def dead_letters(settings: Settings, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """Every record on the dead-letter topic, decoded."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    from streams.codecs import make_codec
    from streams.kafka.clients import consumer_config

    codec = make_codec(settings)
    consumer = Consumer(
        consumer_config(
            settings,
            group_id=f"dlq-reader-{time.time_ns()}",
            **{"enable.auto.commit": False, "enable.partition.eof": True},
        )
    )
    try:
        md = consumer.list_topics(settings.topics.dlq, timeout=timeout_s)
        parts = sorted(md.topics[settings.topics.dlq].partitions)
        ends = {
            p: consumer.get_watermark_offsets(
                TopicPartition(settings.topics.dlq, p), timeout=timeout_s
            )[1]
            for p in parts
        }
        consumer.assign([TopicPartition(settings.topics.dlq, p, OFFSET_BEGINNING) for p in parts])
        remaining = {p for p, end in ends.items() if end > 0}
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                # EOF ends a partition even when its last offsets are transaction markers.
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    remaining.discard(msg.partition())
                continue
            out.append(codec.decode_dead_letter(msg.value()))
            if msg.offset() + 1 >= ends[msg.partition()]:
                remaining.discard(msg.partition())
        return out
    finally:
        consumer.close()


def metric(worker: WorkerProcess, name: str) -> float:
    """Sum of a Prometheus metric's samples from the worker's /metrics page."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            head, value = line.rsplit(" ", 1)
            if head == name or head.startswith(name + "{") or head.startswith(name + "_total"):
                total += float(value)
    return total


def wait_for_metric(
    worker: WorkerProcess, name: str, until: Callable[[float], bool], timeout_s: float = 30.0
) -> float:
    """Poll a metric (the worker may still be starting) until ``until(value)`` holds."""
    deadline = time.monotonic() + timeout_s
    value = float("nan")
    while time.monotonic() < deadline:
        assert worker.alive(), f"worker {worker.pid} died:\n{worker.log_tail()}"
        try:
            value = metric(worker, name)
        except OSError:
            value = float("nan")
        else:
            if until(value):
                return value
        time.sleep(0.2)
    raise AssertionError(f"{name} = {value} after {timeout_s} s:\n{worker.log_tail()}")


def input_offsets(
    settings: Settings,
) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
    """(committed offsets of the worker group, end offsets) of every input partition."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    from streams.kafka.clients import admin_config, consumer_config

    admin = AdminClient(admin_config(settings))
    md = admin.list_topics(timeout=10)
    tps = [TopicPartition(t, p) for t in settings.topics.inputs for p in md.topics[t].partitions]
    group = settings.topics.consumer_group
    result = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, tps)])
    committed = {
        (tp.topic, tp.partition): tp.offset for tp in result[group].result(10).topic_partitions
    }
    from confluent_kafka import Consumer

    c = Consumer(consumer_config(settings, group_id=f"ends-{time.time_ns()}"))
    try:
        ends = {(tp.topic, tp.partition): c.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
    finally:
        c.close()
    return committed, ends


def wait_until_committed(
    settings: Settings, timeout_s: float, workers: Iterable[WorkerProcess] = ()
) -> None:
    """Until the worker group has committed every input partition to its end."""
    deadline = time.monotonic() + timeout_s
    behind: dict[tuple[str, int], tuple[int | None, int]] = {}
    while time.monotonic() < deadline:
        for w in workers:
            assert w.alive(), f"worker {w.pid} died:\n{w.log_tail()}"
        committed, ends = input_offsets(settings)
        # An empty partition needs no commit (its committed offset stays unset).
        behind = {
            tp: (committed.get(tp), end)
            for tp, end in ends.items()
            if end > 0 and committed.get(tp, -1) < end
        }
        if not behind:
            return
        time.sleep(0.5)
    raise AssertionError(
        f"inputs not committed to their end in {timeout_s} s: (committed, end) {behind}"
    )


def health(worker: WorkerProcess) -> tuple[int, dict[str, Any]]:
    """``(HTTP status, report)`` of the worker's /healthz."""
    import urllib.error
    import urllib.request

    url = f"http://127.0.0.1:{worker.web_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def topic_records(settings: Settings, topic: str, timeout_s: float = 20.0) -> list[Any]:
    """Every record of ``topic`` from its beginning to its current end (messages)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    from streams.kafka.clients import consumer_config

    consumer = Consumer(consumer_config(settings, None, **{"enable.partition.eof": True}))
    try:
        parts = sorted(consumer.list_topics(topic, timeout=timeout_s).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        remaining = set(parts)
        out: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is None:
                    out.append(msg)
                elif msg.error().code() == KafkaError._PARTITION_EOF:
                    remaining.discard(msg.partition())
        return out
    finally:
        consumer.close()


def set_topic_config(settings: Settings, topic: str, name: str, value: str) -> None:
    """Change one setting of ``topic`` (an incremental alter, as an operator would)."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ResourceType,
    )

    from streams.kafka.clients import admin_config

    admin = AdminClient(admin_config(settings))
    entry = ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)


def skewed_events(n: int, hot_share: float, services: int, seed: int) -> list[Event]:
    """A stream where one service (``hot-00000``) holds ``hot_share`` of the events and
    ``services`` others share the rest, interleaved by event time (each part keeps the
    arrival order of the synthetic generator)."""
    import heapq

    from streams.synthetic import SyntheticSpec, generate

    hot_n = int(n * hot_share)

    def renamed(e: dict[str, Any]) -> Event:
        fields = {**e, "service": "hot-00000", "event_id": "hot-" + e["event_id"]}
        if e.get("incident_id"):
            fields["incident_id"] = "hot-" + e["incident_id"]
        return parse_event(fields)

    hot = [renamed(e) for e in generate(SyntheticSpec(services=1, events=hot_n, seed=seed))]
    rest = [
        parse_event(e)
        for e in generate(SyntheticSpec(services=services, events=n - hot_n, seed=seed + 1))
    ]
    return list(heapq.merge(hot, rest, key=lambda e: e.occurred_at_ms))


SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW")


def trivy_report(findings: int, created_at: str, image: str, seed: int = 1) -> dict[str, Any]:
    """A Trivy JSON report (``trivy image --format json``, SchemaVersion 2) of one image with
    ``findings`` vulnerabilities spread over OS and language packages."""
    import random

    rng = random.Random(seed)
    repository = image.rpartition(":")[0]
    results: list[dict[str, Any]] = []
    for target, klass, kind, share in (
        (f"{image} (debian 12.5)", "os-pkgs", "debian", 0.6),
        ("app/package-lock.json", "lang-pkgs", "npm", 0.4),
    ):
        vulnerabilities = []
        for _ in range(int(findings * share)):
            n = len(results) * 100_000 + len(vulnerabilities)
            package = f"lib{kind}{rng.randrange(400)}"
            installed = f"{rng.randrange(1, 5)}.{rng.randrange(20)}.{rng.randrange(9)}"
            vulnerabilities.append(
                {
                    "VulnerabilityID": f"CVE-{2019 + n % 7}-{10_000 + n}",
                    "PkgID": f"{package}@{installed}",
                    "PkgName": package,
                    "PkgIdentifier": {"PURL": f"pkg:{kind}/{package}@{installed}"},
                    "InstalledVersion": installed,
                    "FixedVersion": f"{installed}-fix1" if rng.random() < 0.7 else "",
                    "Status": "fixed" if rng.random() < 0.7 else "affected",
                    "Layer": {"Digest": "sha256:" + "e7" * 32, "DiffID": "sha256:" + "f1" * 32},
                    "SeveritySource": "nvd",
                    "PrimaryURL": f"https://avd.aquasec.com/nvd/cve-{n}",
                    "Title": f"{package}: flaw number {n} in the parser",
                    "Description": "A flaw was found in the parser. " * 4,
                    "Severity": SEVERITIES[rng.randrange(4)],
                    "CweIDs": ["CWE-787"],
                }
            )
        results.append(
            {"Target": target, "Class": klass, "Type": kind, "Vulnerabilities": vulnerabilities}
        )
    return {
        "SchemaVersion": 2,
        "CreatedAt": created_at,
        "ArtifactName": image,
        "ArtifactType": "container_image",
        "Metadata": {
            "OS": {"Family": "debian", "Name": "12.5"},
            "ImageID": "sha256:" + "05" * 32,
            "RepoTags": [image],
            "RepoDigests": [f"{repository}@sha256:" + "98" * 32],
        },
        "Results": results,
    }

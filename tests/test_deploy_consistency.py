"""The deployment files stay consistent with the code.

deploy/Dockerfile, deploy/compose.yaml and deploy/k8s/ repeat facts the code owns:
topic names and settings (streams.settings.Topics, streams.kafka.topics.topic_specs),
the consumer group, the RELSEC_* environment variables, the console script and its
subcommands, the Kafka version the project tests against (deploy/kafka/pom.xml).
These tests parse the files and compare them with the code, so a rename on either
side fails here instead of in a cluster. No container engine is needed: the
Dockerfile is checked structurally and the wheel it builds is built from exactly
the files the build context (/.dockerignore) lets in.
"""

from __future__ import annotations

import argparse
import ast
import base64
import functools
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]

from agents.errors import ConfigError
from streams.settings import Settings, Topics

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
K8S_BASE = K8S / "base"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
POM = DEPLOY / "kafka" / "pom.xml"
DOCKERIGNORE = REPO / ".dockerignore"

# The defaults the Kubernetes topics are written for (deploy/k8s/base/kafkatopics.yaml).
K8S_PARTITIONS = 6
K8S_REPLICATION_FACTOR = 3

ENV_NAME = re.compile(r"\bRELSEC_[A-Z0-9_]+\b")
SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|PRIVATE|API_?KEY", re.IGNORECASE)


# ---------------------------------------------------------------------------- loading


def pyproject() -> dict[str, Any]:
    with (REPO / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)


def kustomization() -> dict[str, Any]:
    doc = yaml.safe_load((K8S_BASE / "kustomization.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def k8s_objects() -> list[dict[str, Any]]:
    """Every object of every file the kustomization lists."""
    objects: list[dict[str, Any]] = []
    for name in kustomization()["resources"]:
        for doc in yaml.safe_load_all((K8S_BASE / name).read_text()):
            if doc is not None:
                assert isinstance(doc, dict), f"{name}: a document is not a mapping"
                objects.append(doc)
    return objects


def k8s_kind(kind: str) -> list[dict[str, Any]]:
    return [o for o in k8s_objects() if o.get("kind") == kind]


def the_deployment() -> dict[str, Any]:
    deployments = k8s_kind("Deployment")
    assert len(deployments) == 1, "deploy/k8s must hold exactly one Deployment (the worker)"
    return deployments[0]


def worker_container() -> dict[str, Any]:
    containers = the_deployment()["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def compose_env(service: str) -> dict[str, str]:
    env = compose()["services"][service].get("environment", {})
    if isinstance(env, list):  # the "NAME=value" list form
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def pom_kafka_version() -> str:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    root = ET.parse(POM).getroot()
    node = root.find("m:properties/m:kafka.version", ns)
    assert node is not None and node.text, "deploy/kafka/pom.xml has no <kafka.version>"
    return node.text.strip()


def major_minor(version: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", version)
    assert m, f"not a version: {version!r}"
    return int(m.group(1)), int(m.group(2))


@dataclass(frozen=True, slots=True)
class Instruction:
    """One Dockerfile instruction: keyword (upper case), its raw argument text, line number."""

    keyword: str
    text: str
    line: int

    def exec_form(self) -> list[str]:
        """The JSON (exec) form of ENTRYPOINT/CMD/HEALTHCHECK CMD arguments."""
        text = self.text
        if self.keyword == "HEALTHCHECK":
            text = text[text.index("CMD") + 3 :]
        value = json.loads(text)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), (
            f"Dockerfile line {self.line}: {self.keyword} is not in exec (JSON) form"
        )
        return value


def dockerfile() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(DOCKERFILE.read_text().splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        joined = " ".join(p for p in pending if p)
        pending = []
        keyword, _, text = joined.partition(" ")
        instructions.append(Instruction(keyword.upper(), text.strip(), start))
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


def docker_kw(keyword: str) -> list[Instruction]:
    return [i for i in dockerfile() if i.keyword == keyword]


def dockerfile_env() -> dict[str, str]:
    """ENV of the final stage (``ENV A=1 B=2`` form)."""
    instructions = dockerfile()
    last_from = max(i for i, ins in enumerate(instructions) if ins.keyword == "FROM")
    env: dict[str, str] = {}
    for ins in instructions[last_from:]:
        if ins.keyword == "ENV":
            for token in shlex.split(ins.text):
                name, sep, value = token.partition("=")
                assert sep, f"Dockerfile line {ins.line}: use ENV NAME=value"
                env[name] = value
    return env


def relsec_parser() -> argparse.ArgumentParser:
    from streams.cli import build_parser

    return build_parser()


def parses(argv: list[str]) -> tuple[bool, str]:
    """Whether relsec's own argument parser accepts ``argv`` (and the error if not)."""
    parser = relsec_parser()
    messages: list[str] = []

    def fail(message: str) -> NoReturn:
        messages.append(message)
        raise SystemExit(2)

    def patch(p: argparse.ArgumentParser) -> None:
        p.error = fail  # type: ignore[method-assign]
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    patch(sub)

    patch(parser)
    try:
        parser.parse_args(argv)
    except SystemExit:
        return False, "; ".join(messages) or "exit"
    return True, ""


def topic_specs_k8s() -> list[Any]:
    from streams.kafka.topics import topic_specs

    return list(
        topic_specs(Topics(), partitions=K8S_PARTITIONS, replication_factor=K8S_REPLICATION_FACTOR)
    )


def six_topic_names(topics: Topics) -> set[str]:
    return {
        topics.deploys,
        topics.incidents,
        topics.security_flags,
        topics.alerts,
        topics.alerts_ocsf,
        topics.dlq,
    }


# ------------------------------------------------------- which RELSEC_* names code reads


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


@functools.cache
def code_env_literals() -> frozenset[str]:
    """RELSEC_* names that occur in string literals (not docstrings) of streams/ and agents/."""
    found: set[str] = set()
    for package in ("streams", "agents"):
        for path in (REPO / package).rglob("*.py"):
            tree = ast.parse(path.read_text(), filename=str(path))
            docstrings = _docstring_nodes(tree)
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and id(node) not in docstrings
                ):
                    found.update(ENV_NAME.findall(node.value))
    return frozenset(found)


def _resolve(env: Mapping[str, str]) -> object:
    try:
        return Settings.resolve(env=env)
    except ConfigError as exc:
        return ("ConfigError", str(exc))


def settings_reads(name: str, env: Mapping[str, str]) -> bool:
    """Whether Settings.resolve's result depends on ``name`` given the rest of ``env``."""
    with_it = dict(env)
    with_it.setdefault(name, "relsec-probe-value")
    without = {k: v for k, v in with_it.items() if k != name}
    return _resolve(with_it) != _resolve(without)


def unread_env_names(env: Mapping[str, str]) -> list[str]:
    literals = code_env_literals()
    return sorted(
        name
        for name in env
        if name.startswith("RELSEC_") and name not in literals and not settings_reads(name, env)
    )


def deployment_env() -> dict[str, str]:
    """The worker container's env; values from Secrets become placeholders."""
    env: dict[str, str] = {}
    for item in worker_container().get("env", []):
        env[item["name"]] = str(item["value"]) if "value" in item else f"from-{item['name']}"
    return env


# ====================================================================== topics


def test_kustomization_lists_every_manifest_in_the_directory() -> None:
    listed = set(kustomization()["resources"])
    present = {p.name for p in K8S_BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present
    kinds = sorted(o["kind"] for o in k8s_objects())
    for kind in ("Deployment", "Service", "KafkaTopic", "KafkaUser", "ServiceAccount"):
        assert kind in kinds


def test_both_entry_points_build_on_the_base_and_v1_only_changes_the_strimzi_api() -> None:
    root = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert root["resources"] == ["base"]
    v1 = yaml.safe_load((K8S / "strimzi-v1" / "kustomization.yaml").read_text())
    assert v1["resources"] == ["../base"]
    strimzi_kinds = {
        o["kind"] for o in k8s_objects() if o["apiVersion"].startswith("kafka.strimzi")
    }
    assert strimzi_kinds == {"KafkaTopic", "KafkaUser"}
    patched = set()
    for entry in v1["patches"]:
        assert entry["target"]["group"] == "kafka.strimzi.io"
        assert entry["target"]["version"] == "v1beta2"
        assert yaml.safe_load(entry["patch"]) == [
            {"op": "replace", "path": "/apiVersion", "value": "kafka.strimzi.io/v1"}
        ]
        patched.add(entry["target"]["kind"])
    assert patched == strimzi_kinds


def test_kafkatopic_names_equal_the_codes_topic_names() -> None:
    resources = k8s_kind("KafkaTopic")
    names = [r["spec"].get("topicName", r["metadata"]["name"]) for r in resources]
    assert len(names) == len(set(names)), "a topic is declared twice"
    spec_names = {s.name for s in topic_specs_k8s()}
    assert set(names) == spec_names
    # Every topic of SPEC §7 is there, under the default prefix.
    assert six_topic_names(Topics()) <= set(names)


def test_kafkatopic_partitions_replicas_and_config_equal_topic_specs() -> None:
    declared = declared_topics()
    for spec in topic_specs_k8s():
        resource = declared[spec.name]
        assert resource["apiVersion"] == "kafka.strimzi.io/v1beta2"
        assert resource["spec"]["partitions"] == spec.partitions, spec.name
        assert resource["spec"]["replicas"] == spec.replication_factor, spec.name
        config = {str(k): str(v) for k, v in (resource["spec"].get("config") or {}).items()}
        assert config == {str(k): str(v) for k, v in spec.config.items()}, spec.name


def test_kafkatopics_alerts_compacted_inputs_copartitioned_all_durable() -> None:
    topics = Topics()
    declared = declared_topics()
    assert declared[topics.alerts]["spec"]["config"]["cleanup.policy"] == "compact"
    input_partitions = {declared[t]["spec"]["partitions"] for t in topics.inputs}
    assert input_partitions == {K8S_PARTITIONS}, "inputs must be co-partitioned"
    for name, resource in declared.items():
        min_isr = int(resource["spec"]["config"]["min.insync.replicas"])
        assert 1 <= min_isr < resource["spec"]["replicas"], f"{name}: min ISR must leave slack"
        # Strimzi names: valid Kubernetes resource names, and every KafkaTopic belongs
        # to the same Strimzi cluster as the KafkaUser.
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", resource["metadata"]["name"])
        assert resource["metadata"]["labels"]["strimzi.io/cluster"] == strimzi_cluster()


def declared_topics() -> dict[str, dict[str, Any]]:
    """KafkaTopic resources by the Kafka topic name they manage."""
    return {r["spec"].get("topicName", r["metadata"]["name"]): r for r in k8s_kind("KafkaTopic")}


def strimzi_cluster() -> str:
    users = k8s_kind("KafkaUser")
    assert len(users) == 1
    cluster: str = users[0]["metadata"]["labels"]["strimzi.io/cluster"]
    return cluster


def test_compose_topic_prefix_gives_the_codes_topic_names() -> None:
    for service in ("topics", "worker"):
        env = compose_env(service)
        settings = Settings.resolve(env=env)
        assert six_topic_names(settings.topics) == six_topic_names(Topics()), service
        assert settings.topics.consumer_group == Topics().consumer_group


def test_k8s_topic_prefix_and_consumer_group_match_the_kafkauser_acls() -> None:
    settings = Settings.resolve(env=deployment_env())
    assert six_topic_names(settings.topics) == six_topic_names(Topics())
    acls = strimzi_acls()
    literal_topics = {a["resource"]["name"] for a in acls if is_acl(a, "topic", "literal")}
    assert literal_topics == {s.name for s in topic_specs_k8s()}
    group = settings.topics.consumer_group
    assert {a["resource"]["name"] for a in acls if is_acl(a, "group", "literal")} == {group}
    # Faust names its internal topics (changelogs, leader topic) after the app id,
    # which is the consumer group.
    prefixes = {a["resource"]["name"] for a in acls if is_acl(a, "topic", "prefix")}
    assert prefixes == {f"{group}-"}
    ops = {
        a["resource"]["name"]: set(a["operations"])
        for a in acls
        if a["resource"]["type"] == "topic"
    }
    for name in settings.topics.inputs:
        # Write too: the worker re-keys a misrouted record onto its input topic.
        assert {"Read", "Write"} <= ops[name]
    for name in (settings.topics.alerts, settings.topics.alerts_ocsf, settings.topics.dlq):
        assert "Write" in ops[name]


def strimzi_acls() -> list[dict[str, Any]]:
    user = k8s_kind("KafkaUser")[0]
    assert user["apiVersion"] == "kafka.strimzi.io/v1beta2"
    acls: list[dict[str, Any]] = user["spec"]["authorization"]["acls"]
    return acls


def is_acl(acl: Mapping[str, Any], kind: str, pattern: str) -> bool:
    resource = acl["resource"]
    return bool(resource["type"] == kind and resource.get("patternType", "literal") == pattern)


# ================================================================ env and secrets


def test_every_relsec_env_var_in_the_deploy_files_is_read_by_the_code() -> None:
    sources: dict[str, dict[str, str]] = {
        "Dockerfile": dockerfile_env(),
        "k8s Deployment": deployment_env(),
    }
    for service in compose()["services"]:
        sources[f"compose {service}"] = compose_env(service)
    # Names anywhere in the text too (comments, ConfigMaps), not only in env blocks.
    mentioned: set[str] = set()
    for path in [DOCKERFILE, COMPOSE, *K8S.rglob("*.yaml")]:
        mentioned.update(ENV_NAME.findall(path.read_text()))
    assert mentioned, "no RELSEC_* names found: the parser is broken"
    declared = set().union(*(set(env) for env in sources.values()))
    assert {n for n in declared if n.startswith("RELSEC_")} <= mentioned
    for where, env in sources.items():
        assert unread_env_names(env) == [], where
    unread_mentions = sorted(
        n
        for n in mentioned
        if n not in code_env_literals()
        and not settings_reads(n, {})
        and not settings_reads(n, deployment_env())
    )
    assert unread_mentions == []


def test_the_env_checker_catches_a_name_the_code_does_not_read() -> None:
    env = {"RELSEC_BOOTSTRAP_SERVERS": "kafka:9092", "RELSEC_NOT_A_SETTING": "1"}
    assert unread_env_names(env) == ["RELSEC_NOT_A_SETTING"]
    # and one the code reads only through Settings (built from a prefix and a suffix)
    assert settings_reads("RELSEC_KAFKA_SASL_PASSWORD", deployment_env())


def test_k8s_sasl_settings_resolve_and_credentials_come_from_a_secret() -> None:
    container = worker_container()
    by_name = {e["name"]: e for e in container["env"]}
    for name in ("RELSEC_KAFKA_SASL_USERNAME", "RELSEC_KAFKA_SASL_PASSWORD"):
        assert "value" not in by_name[name], f"{name} must not be a literal"
        assert by_name[name]["valueFrom"]["secretKeyRef"]["name"]
    security = Settings.resolve(env=deployment_env()).security
    assert security.security_protocol == "SASL_SSL"
    assert security.sasl_mechanism is not None
    user = k8s_kind("KafkaUser")[0]
    assert user["spec"]["authentication"]["type"].upper() == security.sasl_mechanism
    # The CA file the clients are told about is a mounted path.
    ca = security.ssl_ca_location
    assert ca is not None
    mounts = [m["mountPath"].rstrip("/") + "/" for m in container["volumeMounts"]]
    assert any(ca.startswith(m) for m in mounts)
    # No Secret objects (with data) are shipped in the manifests.
    assert k8s_kind("Secret") == []


def test_no_secret_values_anywhere_in_the_deploy_files() -> None:
    for env in (dockerfile_env(), compose_env("worker"), compose_env("topics"), deployment_env()):
        for name, value in env.items():
            if SECRETISH.search(name):
                assert value.startswith("from-"), f"{name} has a literal value"
    for ins in docker_kw("ARG") + docker_kw("ENV"):
        assert not SECRETISH.search(ins.text.split("=")[0]), f"line {ins.line}: {ins.text}"
    for env_items in (
        item
        for c in the_deployment()["spec"]["template"]["spec"]["containers"]
        for item in c.get("env", [])
    ):
        if SECRETISH.search(env_items["name"]):
            assert "secretKeyRef" in env_items.get("valueFrom", {})


# ============================================================== Dockerfile


def test_dockerfile_is_multi_stage_python_311_slim_and_installs_the_rocksdb_extra() -> None:
    froms = docker_kw("FROM")
    assert len(froms) >= 2, "multi-stage: a build stage and a runtime stage"
    args = {}
    for ins in docker_kw("ARG"):
        name, _, default = ins.text.partition("=")
        args[name] = default
    for ins in froms:
        image = ins.text.split()[0]
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image)
        assert image == "python:3.11-slim", f"line {ins.line}: {image}"
    runs = " ".join(i.text for i in docker_kw("RUN"))
    assert re.search(r"pip wheel .*\.\[rocksdb\]", runs), (
        "the build stage builds a wheel of the repo"
    )
    assert re.search(r"pip install .*relsec\[rocksdb\]", runs)
    assert "rocksdb" in pyproject()["project"]["optional-dependencies"]
    # Base images come from FROM, never from a downloaded archive.
    for ins in docker_kw("ADD"):
        assert not re.search(r"https?://|git@", ins.text), f"line {ins.line}: ADD of a URL"
    assert not re.search(r"(curl|wget)\s", runs), "nothing is downloaded outside pip"


def test_dockerfile_runs_the_relsec_console_script_as_a_non_root_user() -> None:
    (entrypoint,) = docker_kw("ENTRYPOINT")
    assert entrypoint.exec_form() == ["relsec"]
    scripts = pyproject()["project"]["scripts"]
    assert "relsec" in scripts
    module, _, func = scripts["relsec"].partition(":")
    import importlib

    assert callable(getattr(importlib.import_module(module), func))
    users = docker_kw("USER")
    assert users, "no USER: the image would run as root"
    user = users[-1].text.split(":")[0]
    assert user not in ("0", "root")
    # The final USER comes after the last FROM (it applies to the runtime stage).
    instructions = dockerfile()
    assert instructions.index(users[-1]) > max(
        i for i, ins in enumerate(instructions) if ins.keyword == "FROM"
    )
    # It is the uid the Kubernetes pod runs as.
    pod = the_deployment()["spec"]["template"]["spec"]["securityContext"]
    assert str(pod["runAsUser"]) == user
    (cmd,) = docker_kw("CMD")
    assert cmd.exec_form()[0] == "worker"


def test_dockerfile_defaults_name_the_codes_settings() -> None:
    env = dockerfile_env()
    for name in ("RELSEC_BOOTSTRAP_SERVERS", "RELSEC_TOPIC_PREFIX"):
        assert name in env
    settings = Settings.resolve(env=env)
    assert settings.bootstrap_servers == env["RELSEC_BOOTSTRAP_SERVERS"]
    assert six_topic_names(settings.topics) == six_topic_names(Topics())


def web_port(argv: list[str]) -> tuple[str, int]:
    host = argv[argv.index("--web-host") + 1]
    port = int(argv[argv.index("--web-port") + 1])
    return host, port


def test_web_endpoint_is_bound_on_all_interfaces_in_containers_and_probed_on_one_port() -> None:
    (cmd,) = docker_kw("CMD")
    host, port = web_port(cmd.exec_form())
    assert host == "0.0.0.0"
    (expose,) = docker_kw("EXPOSE")
    assert expose.text.split("/")[0] == str(port)
    (health,) = docker_kw("HEALTHCHECK")
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/[^'\"]*)", health.text)
    assert url and int(url.group(1)) == port
    health_path = url.group(2)
    # compose
    worker = compose()["services"]["worker"]
    assert web_port(worker["command"]) == ("0.0.0.0", port)
    assert f"127.0.0.1:{port}:{port}" in worker["ports"]
    # Kubernetes: args, containerPort, probes and Service agree.
    container = worker_container()
    assert web_port(container["args"]) == ("0.0.0.0", port)
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert named[container[probe]["httpGet"]["port"]] == port, probe
        assert container[probe]["httpGet"]["path"] == health_path, probe
    (service,) = k8s_kind("Service")
    (service_port,) = service["spec"]["ports"]
    assert named[service_port["targetPort"]] == port
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    labels = the_deployment()["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_the_worker_runs_alike_everywhere_with_rocksdb_state_on_the_mounted_dir() -> None:
    image_cmd = docker_kw("CMD")[0].exec_form()
    assert compose()["services"]["worker"]["command"] == image_cmd
    assert worker_container()["args"] == image_cmd
    data_dir = image_cmd[image_cmd.index("--data-dir") + 1]
    assert image_cmd[image_cmd.index("--store") + 1] == "rocksdb"
    assert docker_kw("WORKDIR")[-1].text == data_dir
    assert f"worker-state:{data_dir}" in compose()["services"]["worker"]["volumes"]
    mounts = {m["mountPath"]: m["name"] for m in worker_container()["volumeMounts"]}
    volumes = {v["name"]: v for v in the_deployment()["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes[mounts[data_dir]]


def test_every_command_line_in_the_deploy_files_parses_with_relsecs_own_parser() -> None:
    commands: dict[str, list[str]] = {"Dockerfile CMD": docker_kw("CMD")[0].exec_form()}
    for name, service in compose()["services"].items():
        if service.get("image", "").startswith("relsec:"):
            commands[f"compose {name}"] = service["command"]
    commands["k8s worker"] = worker_container()["args"]
    assert compose()["services"]["topics"]["command"] == ["topics", "create"]
    failures = {
        where: why for where, argv in commands.items() for ok, why in [parses(argv)] if not ok
    }
    assert failures == {}
    # and the checker itself rejects what relsec does not know
    assert not parses(["worker", "--no-such-option"])[0]


# ================================================================ compose


def test_compose_kafka_is_apache_kafka_at_the_poms_major_minor_in_kraft_mode() -> None:
    kafka = compose()["services"]["kafka"]
    image, _, tag = kafka["image"].partition(":")
    assert image == "apache/kafka"
    assert major_minor(tag) == major_minor(pom_kafka_version())
    env = compose_env("kafka")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in k for k in env)
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16
    # The address the relsec containers use is one the broker advertises.
    advertised = {a.split("://", 1)[1] for a in env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    for service in ("topics", "worker"):
        for address in compose_env(service)["RELSEC_BOOTSTRAP_SERVERS"].split(","):
            assert address in advertised, f"{service}: {address} is not advertised"
    assert "localhost:9092" in advertised  # the SPEC's default, for host-side relsec


def test_compose_publishes_ports_on_loopback_only() -> None:
    published = 0
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            published += 1
            text = (
                port if isinstance(port, str) else f"{port.get('host_ip')}:{port.get('published')}"
            )
            assert text.startswith("127.0.0.1:"), f"{name}: {port}"
    assert published >= 2


def test_compose_topics_run_once_before_the_worker_on_a_healthy_kafka() -> None:
    services = compose()["services"]
    assert "healthcheck" in services["kafka"]
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["topics"].get("restart", "no") == "no"
    worker_deps = services["worker"]["depends_on"]
    assert worker_deps["kafka"]["condition"] == "service_healthy"
    assert worker_deps["topics"]["condition"] == "service_completed_successfully"
    # The state volume is mounted at the image's working directory.
    (workdir,) = docker_kw("WORKDIR")[-1:]
    assert any(v.endswith(f":{workdir.text}") for v in services["worker"]["volumes"])


def test_image_tags_are_the_project_version() -> None:
    version = pyproject()["project"]["version"]
    assert compose()["services"]["worker"]["image"] == f"relsec:{version}"
    (image,) = kustomization()["images"]
    assert image["name"] == worker_container()["image"]
    assert image["newTag"] == version


# ============================================================ Kubernetes worker


def test_deployment_is_locked_down_with_writable_state_and_tmp() -> None:
    pod = the_deployment()["spec"]["template"]["spec"]
    container = worker_container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod.get("automountServiceAccountToken") is False
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    workdir = docker_kw("WORKDIR")[-1].text
    assert "emptyDir" in volumes[mounts[workdir]], "the RocksDB state dir is an emptyDir"
    assert "emptyDir" in volumes[mounts["/tmp"]]
    resources = container["resources"]
    for kind in ("cpu", "memory"):
        assert kind in resources["requests"] and kind in resources["limits"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert probe in container


# ============================================================ build context


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(.dockerignore) rules in order: (is_exception, regex). Last match wins."""
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        pattern = pattern.strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        rules.append((negate, re.compile(regex)))
    return rules


def in_build_context(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker semantics: a pattern matching a directory matches all beneath it."""
    parts = relative.split("/")
    included = True
    for negate, regex in rules:
        if any(regex.fullmatch("/".join(parts[: n + 1])) for n in range(len(parts))):
            included = negate
    return included


def context_files() -> Iterator[Path]:
    rules = dockerignore_rules()
    for path in REPO.rglob("*"):
        relative = path.relative_to(REPO).as_posix()
        if relative.startswith((".git/", ".venv/")) or not path.is_file():
            continue
        if in_build_context(relative, rules):
            yield path


def test_build_context_leaves_out_the_venv_git_and_tests() -> None:
    rules = dockerignore_rules()
    assert in_build_context("pyproject.toml", rules)
    assert in_build_context("streams/settings.py", rules)
    for outside in (
        ".venv/bin/python",
        ".git/config",
        "tests/test_x.py",
        ".relsec/kafka/x",
        "streams/__pycache__/settings.cpython-311.pyc",
        ".env",
    ):
        assert not in_build_context(outside, rules), outside


@pytest.mark.slow
def test_the_wheel_builds_from_the_build_context_alone(tmp_path: Path) -> None:
    """What `pip wheel` does in the image's build stage, on the files the context admits."""
    src = tmp_path / "src"
    copied = 0
    for path in context_files():
        target = src / path.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        copied += 1
    assert copied > 0
    out = tmp_path / "wheels"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
            "--wheel-dir",
            str(out),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = out.glob("relsec-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "relsec = streams.cli:main" in zf.read(entry_points).decode()
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        assert "Provides-Extra: rocksdb" in zf.read(metadata).decode()
    assert "streams/settings.py" in names
    shipped_schemas = {n for n in names if n.startswith("schemas/") and n.endswith(".avsc")}
    repo_schemas = {p.relative_to(REPO).as_posix() for p in (REPO / "schemas").rglob("*.avsc")}
    assert repo_schemas and shipped_schemas == repo_schemas


# ================================================= the compose broker, for real

# Environment variables the apache/kafka image does not turn into broker properties
# (docker/resources/common-scripts/kafka-propertiesSpec.json in apache/kafka).
IMAGE_ENV_EXCLUDES = {
    "KAFKA_VERSION",
    "KAFKA_HEAP_OPT",
    "KAFKA_LOG4J_OPTS",
    "KAFKA_OPTS",
    "KAFKA_JMX_OPTS",
    "KAFKA_JVM_PERFORMANCE_OPTS",
    "KAFKA_GC_LOG_OPTS",
    "KAFKA_LOG4J_ROOT_LOGLEVEL",
    "KAFKA_LOG4J_LOGGERS",
    "KAFKA_TOOLS_LOG4J_LOGLEVEL",
}


def image_property_name(env_name: str) -> str:
    """The apache/kafka image's renaming (its utility.go ConvertKey).

    Drop ``KAFKA_``; ``_`` becomes ``.``, ``__`` becomes ``_``, ``___`` becomes ``-``.
    """
    key = env_name[len("KAFKA_") :]
    key = re.sub(r"(?<=[^_])_(?=[^_])", ".", key)
    return key.replace("___", "-").replace("__", "_").lower()


def compose_broker_properties(ports: Mapping[int, int], log_dir: Path) -> dict[str, str]:
    """server.properties the image would write for the compose ``kafka`` service.

    Rewritten for this host only where it must be: the service's hostname and the
    listeners' wildcard host become 127.0.0.1, container ports become free ports
    (``ports``: container port → local port), the log dir a temporary directory.
    """
    props: dict[str, str] = {}
    for name, value in compose_env("kafka").items():
        if name.startswith("KAFKA_") and name not in IMAGE_ENV_EXCLUDES:
            props[image_property_name(name)] = value

    def rewrite(text: str) -> str:
        def address(m: re.Match[str]) -> str:
            return f"{m.group(1)}127.0.0.1:{ports[int(m.group(3))]}"

        return re.sub(r"(//|@|^)(kafka|localhost|)?:(\d+)", address, text)

    for key in ("listeners", "advertised.listeners", "controller.quorum.voters"):
        props[key] = ",".join(rewrite(part) for part in props[key].split(","))
    props["log.dirs"] = str(log_dir)
    return props


def answers(bootstrap: str) -> bool:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000})
    try:
        return len(admin.list_topics(timeout=2).brokers) == 1
    except Exception:
        return False


@pytest.mark.kafka
@pytest.mark.slow
def test_compose_kafka_settings_boot_apache_kafka_and_topics_create_works(
    tmp_path: Path,
) -> None:
    """The compose broker's settings, run by the pom's Kafka jars, then the `topics` service."""
    import os
    import time

    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]

    from streams.devkafka import check_java, find_java, locate_kafka, pick_free_ports

    assert image_property_name("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP") == (
        "listener.security.protocol.map"
    )
    java = find_java()
    check_java(java)
    dist = locate_kafka(pom_kafka_version())
    internal, controller, host = pick_free_ports(3)
    props = compose_broker_properties({29092: internal, 9093: controller, 9092: host}, tmp_path)
    assert props["process.roles"] == "broker,controller"
    config = tmp_path / "server.properties"
    config.write_text("".join(f"{k}={v}\n" for k, v in sorted(props.items())))
    classpath = ["-cp", str(dist.libs_dir / "*"), f"-Dkafka.logs.dir={tmp_path}"]
    env = compose_env("kafka")
    fmt = subprocess.run(
        [java, "-Xmx256m", *classpath, "kafka.tools.StorageTool", "format",
         "-t", env["CLUSTER_ID"], "-c", str(config)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    log = (tmp_path / "broker.out").open("wb")
    broker = subprocess.Popen(
        [java, "-Xmx512m", *classpath, "kafka.Kafka", str(config)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        in_network = f"127.0.0.1:{internal}"
        from_host = f"127.0.0.1:{host}"
        deadline = time.monotonic() + 90
        while not (answers(in_network) and answers(from_host)):
            assert broker.poll() is None, (tmp_path / "broker.out").read_text()[-3000:]
            assert time.monotonic() < deadline, "the compose broker did not answer in 90 s"
            time.sleep(0.5)

        # The `topics` service: its command and environment, on the in-network listener.
        service_env = {
            **os.environ,
            **compose_env("topics"),
            "RELSEC_BOOTSTRAP_SERVERS": in_network,
        }
        argv = compose()["services"]["topics"]["command"]
        created = subprocess.run(
            [sys.executable, "-m", "streams.cli", *argv],
            env=service_env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert created.returncode == 0, created.stdout + created.stderr
        again = subprocess.run(
            [sys.executable, "-m", "streams.cli", *argv],
            env=service_env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert again.returncode == 0, "topics create must be idempotent (compose reruns it)"

        # Seen from the host listener: the code's topics, with the code's settings.
        from streams.kafka.topics import topic_specs

        admin = AdminClient({"bootstrap.servers": from_host})
        metadata = admin.list_topics(timeout=10)
        specs = {s.name: s for s in topic_specs(Topics(), partitions=6, replication_factor=1)}
        assert set(specs) <= set(metadata.topics)
        for name, spec in specs.items():
            assert len(metadata.topics[name].partitions) == spec.partitions
        resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in specs]
        for resource, future in admin.describe_configs(resources).items():
            live = {k: v.value for k, v in future.result(timeout=30).items()}
            for key, value in specs[resource.name].config.items():
                assert live[key] == value, f"{resource.name} {key}"

        # A record produced from the host is read in the network (both listeners work).
        topic = Topics().deploys
        producer = Producer({"bootstrap.servers": from_host, "acks": "all"})
        producer.produce(topic, key=b"svc", value=b"{}")
        assert producer.flush(30) == 0
        consumer = Consumer(
            {"bootstrap.servers": in_network, "group.id": "deploy-test",
             "auto.offset.reset": "earliest"}
        )  # fmt: skip
        consumer.subscribe([topic])
        got = None
        deadline = time.monotonic() + 60
        while got is None and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                got = msg
        consumer.close()
        assert got is not None and got.key() == b"svc"
    finally:
        broker.terminate()
        try:
            broker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait()
        log.close()


def healthcheck_argv(port: int) -> list[str]:
    """The Dockerfile's HEALTHCHECK command, pointed at ``port`` instead of the image's."""
    (health,) = docker_kw("HEALTHCHECK")
    argv = health.exec_form()
    _, image_port = web_port(docker_kw("CMD")[0].exec_form())
    assert argv[0] == "python"
    return [sys.executable, *[a.replace(f":{image_port}/", f":{port}/") for a in argv[1:]]]


def test_the_healthcheck_command_passes_on_200_and_fails_otherwise() -> None:
    import http.server
    import threading

    from streams.devkafka import pick_free_ports

    status = {"code": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status["code"])
            self.end_headers()
            self.wfile.write(b'{"status": "OK"}')

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        argv = healthcheck_argv(server.server_address[1])
        assert subprocess.run(argv, timeout=30, check=False).returncode == 0
        status["code"] = 503
        assert subprocess.run(argv, timeout=30, check=False, capture_output=True).returncode != 0
    finally:
        server.shutdown()
        server.server_close()
    (closed,) = pick_free_ports(1)
    nothing = subprocess.run(healthcheck_argv(closed), timeout=30, check=False, capture_output=True)
    assert nothing.returncode != 0


@pytest.mark.kafka
@pytest.mark.slow
def test_the_images_worker_command_runs_and_its_healthcheck_and_metrics_answer(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """The image's CMD on a real broker (bound to 127.0.0.1 here, as no container isolates it)."""
    import os
    import signal
    import time
    import urllib.request

    from confluent_kafka.admin import AdminClient

    from streams.devkafka import pick_free_ports
    from streams.kafka.topics import ensure_topics

    ensure_topics(kafka_settings, partitions=6)
    admin = AdminClient({"bootstrap.servers": kafka_settings.bootstrap_servers})
    topics_before = set(admin.list_topics(timeout=10).topics)
    (port,) = pick_free_ports(1)
    argv = docker_kw("CMD")[0].exec_form()
    argv[argv.index("--web-host") + 1] = "127.0.0.1"
    argv[argv.index("--web-port") + 1] = str(port)
    data_dir = tmp_path / "state"
    data_dir.mkdir()
    argv[argv.index("--data-dir") + 1] = str(data_dir)
    env = {
        **os.environ,
        **dockerfile_env(),
        "RELSEC_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "RELSEC_TOPIC_PREFIX": kafka_settings.topics.prefix,
    }
    out = (tmp_path / "worker.out").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", *argv],
        env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        health = healthcheck_argv(port)
        while subprocess.run(health, capture_output=True, timeout=30, check=False).returncode:
            assert worker.poll() is None, (tmp_path / "worker.out").read_text()[-3000:]
            assert time.monotonic() < deadline, "the worker's health check never passed"
            time.sleep(1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            body = resp.read()
            assert b"# TYPE relsec_" in body, body[:500]
        # The image runs the kafka runtime, whose state lives in the changelog topic.
        assert argv[argv.index("--runtime") + 1] == "kafka"
        # The state changelog comes with the topics (relsec topics create, the
        # KafkaTopics); every topic the worker made for itself is named after its
        # consumer group, so the KafkaUser's prefix ACL (`<group>-`) covers it.
        stem = kafka_settings.topics.prefix.rstrip(".-_")  # this pipeline's topics only
        made = {
            name
            for name in set(admin.list_topics(timeout=10).topics) - topics_before
            if name.startswith(stem)
        }
        assert kafka_settings.topics.state_changelog in topics_before
        group = kafka_settings.topics.consumer_group
        assert all(name.startswith(f"{group}-") for name in made), sorted(made)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        out.close()


def test_relsec_command_lines_in_the_deploy_docs_parse() -> None:
    """Every `relsec ...` line in a shell block of the deploy docs is a valid command."""
    checked = 0
    for doc in (REPO / "docs" / "deploy.md", DEPLOY / "README.md"):
        for block in re.findall(r"```sh\n(.*?)```", doc.read_text(), flags=re.DOTALL):
            for line in block.splitlines():
                if not line.startswith("relsec "):
                    continue
                words = shlex.split(line, comments=True)
                if words[:1] == ["relsec"]:
                    ok, why = parses(words[1:])
                    assert ok, f"{doc.name}: {line!r}: {why}"
                    checked += 1
    assert checked >= 2

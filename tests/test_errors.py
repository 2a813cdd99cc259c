"""relsec's errors: one root, each defined in the layer that raises it, locations as values.

The walk imports every module of ``agents`` and ``streams`` and reads their source:
every exception class defined there derives from :class:`RelsecError` (but for the
private control-flow helpers listed with their reason), ``agents.errors`` holds only
the root and the errors of the layers everything stands on, and every other error
lives in the ``errors`` module of the package that raises it. The location values
render exactly the text the messages showed when they were strings.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import agents
import streams
from agents.errors import (
    DecodeError,
    FileLine,
    JsonPath,
    RecordAt,
    RelsecError,
    ValidationError,
)
from streams.ingest import convert
from streams.ingest.errors import AdapterError, ConversionFailed
from streams.replay import DeadLetter
from streams.worker.errors import ConsumerFailed
from streams.worker.records import InputRecord

REPO = Path(__file__).resolve().parents[1]
PAYLOADS = REPO / "tests" / "data" / "payloads"

NOT_RELSEC_ERRORS = {
    "agents.model.timefmt.TimestampError": (
        "a ValueError by design: the timestamp parser is a plain function whose callers "
        "turn it into a ValidationError naming the field (or a ConfigError naming the flag)"
    ),
    "streams.cli.api.Unavailable": (
        "never leaves `relsec check`: no verdict from the API is exit status 3, not a failure"
    ),
    "streams.ingest.gateway.Refusal": (
        "never leaves the gateway's request handler: it becomes the HTTP answer (401, 413, ...)"
    ),
    "streams.codecs.avro_direct.DirectReadError": (
        "never leaves the codec: a record the direct Avro reader cannot read is read again by "
        "fastavro, whose error (a DecodeError) is the one reported"
    ),
}
"""Exception classes that are not relsec errors on purpose, with the reason."""

SHARED_ERRORS = {
    "RelsecError": "the root",
    "ValidationError": "raised by the model; the codecs, the API and replay tell where",
    "DecodeError": "raised by the codecs every reader of events shares (worker, API, notify)",
    "FileError": "raised by replay and the commands that read and write files",
    "StateError": "raised by the engine's state; the worker and the API read states",
    "ConfigError": "raised by every command's settings, so the root of their checks",
}
"""What ``agents.errors`` holds: the errors of the layers everything else stands on."""


def all_modules() -> Iterator[ModuleType]:
    for package in (agents, streams):
        yield package
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith(".__main__"):  # runs the CLI when imported
                continue
            yield importlib.import_module(info.name)


def exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module in all_modules():
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                found[f"{module.__name__}.{name}"] = value
    return found


def names_constructed_in(folder: Path) -> set[str]:
    """Names of the classes ``folder``'s modules call (``X(...)``, ``mod.X(...)``)."""
    found: set[str] = set()
    paths = [folder] if folder.is_file() else folder.rglob("*.py")
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call):
                if isinstance(node.func, ast.Name):
                    found.add(node.func.id)
                elif isinstance(node.func, ast.Attribute):
                    found.add(node.func.attr)
    return found


def test_the_walk_finds_the_errors_of_every_layer() -> None:
    names = set(exception_classes())
    for expected in (
        "agents.errors.ValidationError",
        "streams.devkafka.errors.PrivateDirError",
        "streams.kafka.errors.TopicError",
        "streams.ingest.errors.SignatureError",
        "streams.notify.errors.DeliveryError",
        "streams.catalog.errors.CatalogError",
        "streams.worker.errors.DeliveryRefused",
    ):
        assert expected in names


def test_every_exception_class_derives_from_the_one_root() -> None:
    classes = exception_classes()
    outside = {name for name, cls in classes.items() if not issubclass(cls, RelsecError)}
    assert outside == set(NOT_RELSEC_ERRORS), (
        "exception classes outside RelsecError (derive from RelsecError, or list the "
        f"class with its reason): {sorted(outside - set(NOT_RELSEC_ERRORS))}; "
        f"listed but gone or now a RelsecError: {sorted(set(NOT_RELSEC_ERRORS) - outside)}"
    )


def test_agents_errors_holds_only_the_root_and_the_shared_errors() -> None:
    defined = {
        name.rpartition(".")[2] for name in exception_classes() if name.startswith("agents.errors.")
    }
    assert defined == set(SHARED_ERRORS)


def test_each_error_of_a_layer_is_defined_in_the_errors_module_of_the_package_raising_it() -> None:
    classes = exception_classes()
    checked = 0
    for name, cls in classes.items():
        module = cls.__module__
        if module == "agents.errors" or name in NOT_RELSEC_ERRORS:
            continue
        parts = module.split(".")
        assert parts[0] == "streams" and len(parts) == 3 and parts[2] == "errors", (
            f"{name} is defined outside an errors module of a streams package"
        )
        package = REPO / "streams" / parts[1]
        constructed = names_constructed_in(package)
        family = {cls.__name__} | {
            other.__name__
            for other in classes.values()
            if issubclass(other, cls) and other.__module__ == module
        }
        assert family & constructed, f"{name} is not raised anywhere in streams/{parts[1]}/"
        checked += 1
    assert checked >= 15


def test_the_shared_errors_are_raised_where_agents_errors_says() -> None:
    constructed_in_agents = names_constructed_in(REPO / "agents")
    assert {"ValidationError", "StateError"} <= constructed_in_agents
    assert "DecodeError" in names_constructed_in(REPO / "streams" / "codecs")
    assert "FileError" in names_constructed_in(REPO / "streams" / "replay.py")
    assert "ConfigError" in names_constructed_in(REPO / "streams" / "settings.py")


# -- locations as values ----------------------------------------------------------


def test_a_file_line_is_the_value_and_renders_path_colon_line() -> None:
    where = FileLine("events/2026-03-04.jsonl", 17)
    err = ValidationError("service", "missing", "is required").located(where)
    assert err.where is where
    assert str(err) == "events/2026-03-04.jsonl:17: field 'service': is required"
    letter = DeadLetter("events.jsonl", 3, "invalid_json", "not JSON: x", b"{")
    assert letter.where == FileLine("events.jsonl", 3)
    assert letter.message() == "events.jsonl:3: invalid_json: not JSON: x"


def test_a_record_location_is_the_value_and_renders_topic_partition_offset() -> None:
    where = RecordAt("relsec.alerts", 2, 17)
    err = DecodeError("undecodable", "not JSON", None).located(where)
    assert err.where is where and err.reason == "undecodable"
    assert str(err) == "relsec.alerts[2]@17: not JSON"
    invalid = ValidationError("release", "too_long", "is too long", where)
    assert invalid.where is where
    assert str(invalid) == "relsec.alerts[2]@17: field 'release': is too long"
    assert str(RecordAt("relsec.dlq")) == "relsec.dlq"
    assert str(RecordAt("relsec.dlq", 0)) == "relsec.dlq[0]"
    failed = ConsumerFailed(RecordAt("relsec.deploys", 4), "broker down")
    assert failed.at == RecordAt("relsec.deploys", 4)
    assert str(failed) == "consumer failed at relsec.deploys[4]: broker down"
    record = InputRecord("relsec.deploys", 1, 99, b"checkout", b"{}")
    assert record.at == RecordAt("relsec.deploys", 1, 99)


def test_an_adapter_error_keeps_the_json_path_as_a_value() -> None:
    payload = orjson.loads((PAYLOADS / "github" / "deployment_status.success.json").read_bytes())
    del payload["deployment_status"]["state"]
    with pytest.raises(AdapterError) as info:
        convert("github", payload)
    err = info.value
    assert err.where == JsonPath(("deployment_status", "state"))
    assert err.path == "$.deployment_status.state"
    assert str(err).startswith("github payload: $.deployment_status.state: ")
    told = ConversionFailed(err, index=2)
    assert told.where == err.where and str(told) == str(err)


def test_a_quoted_key_and_a_derived_name_keep_their_text() -> None:
    flux = AdapterError("flux", "$.metadata['kustomize.toolkit.fluxcd.io/revision']", "missing")
    assert flux.where == JsonPath(("metadata", "kustomize.toolkit.fluxcd.io/revision"))
    assert str(flux) == "flux payload: $.metadata['kustomize.toolkit.fluxcd.io/revision']: missing"
    derived = AdapterError("trivy", "service", "no service named")
    assert derived.where == "service" and derived.path == "service"
    # Not written the canonical way: kept as given, so the message shows what was written.
    odd = AdapterError("argocd", "$['app']", "missing")
    assert odd.where == "$['app']" and str(odd) == "argocd payload: $['app']: missing"


_KEYS = st.one_of(
    st.integers(min_value=0, max_value=10_000),
    st.text(st.characters(blacklist_characters="'\"", blacklist_categories=("Cs",)), min_size=1),
)


@given(st.lists(_KEYS, max_size=6))
def test_a_json_path_parses_back_from_its_text(steps: list[str | int]) -> None:
    path = JsonPath(tuple(steps))
    assert JsonPath.parse(str(path)) == path
    assert JsonPath.of(str(path)) == path


@pytest.mark.parametrize("text", ["deployment_status", "$.", "$[x]", "$.a..b", "$['unclosed"])
def test_text_that_is_no_json_path_is_refused_by_parse_and_kept_by_of(text: str) -> None:
    with pytest.raises(ValueError):
        JsonPath.parse(text)
    assert JsonPath.of(text) == text

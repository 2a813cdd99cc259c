"""Another language reads relsec's topics: Java's Apache Avro against relsec's records.

Apache Avro for Java is resolved from Maven Central with tests/codecs/java/pom.xml
(once; the jars are cached under ``$RELSEC_CACHE_DIR``, default ``~/.cache/relsec``,
with the same local Maven repository the Kafka fixture uses), and
tests/codecs/java/RelsecAvroInterop.java runs as a single-file program. Checked:
Java's ``SchemaNormalization`` computes relsec's fingerprints (every kept version);
Java's ``BinaryMessageDecoder`` reads every kind of relsec record (and records of
every kept older version, resolved to the current one); Java's
``BinaryMessageEncoder`` writes byte-identical records, which relsec's codec reads.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from codec_samples import EVENTS, make_alert, make_dead_letter
from fastavro import parse_schema, schemaless_writer

from schemas import KEPT_VERSIONS, SCHEMA_NAMES, load_schema
from streams.codecs import UNKNOWN_SCHEMA, SingleObjectCodec
from streams.codecs.datum import alert_to_datum, dead_letter_to_datum, event_to_datum
from streams.codecs.fingerprint import schema_fingerprint

REPO = Path(__file__).resolve().parents[2]
JAVA_DIR = Path(__file__).resolve().parent / "java"
AVRO_JAVA_VERSION = "1.12.0"
MAVEN_TIMEOUT_S = 600
JAVA_TIMEOUT_S = 180


def _cache_root() -> Path:
    return Path(os.environ.get("RELSEC_CACHE_DIR") or Path.home() / ".cache" / "relsec")


@pytest.fixture(scope="module")
def avro_java_classpath() -> str:
    libs = _cache_root() / "avro-java" / AVRO_JAVA_VERSION / "libs"
    if not (libs / f"avro-{AVRO_JAVA_VERSION}.jar").is_file():
        mvn = os.environ.get("RELSEC_MVN") or shutil.which("mvn")
        assert mvn, "Maven (mvn) is needed to resolve Apache Avro for Java"
        repo = os.environ.get("RELSEC_MAVEN_REPO") or str(_cache_root() / "m2")
        libs.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="libs-", dir=libs.parent))
        done = subprocess.run(
            [
                mvn, "-B", "-q", "-f", str(JAVA_DIR / "pom.xml"),
                f"-Dmaven.repo.local={repo}", f"-Davro.version={AVRO_JAVA_VERSION}",
                "dependency:copy-dependencies", f"-DoutputDirectory={staging}",
                "-DincludeScope=runtime",
            ],
            capture_output=True, text=True, timeout=MAVEN_TIMEOUT_S, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
    return f"{libs}/*"


def _java(classpath: str, mode: str, stdin: str = "") -> list[str]:
    java = shutil.which("java")
    assert java, "a Java 11+ runtime is needed"
    done = subprocess.run(
        [
            java, "-cp", classpath, str(JAVA_DIR / "RelsecAvroInterop.java"),
            mode, str(REPO / "schemas"),
        ],
        input=stdin, capture_output=True, text=True, timeout=JAVA_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_java_computes_the_same_fingerprints(avro_java_classpath: str) -> None:
    lines = _java(avro_java_classpath, "fingerprints")
    expected = []
    for name in SCHEMA_NAMES:
        expected.append(f"{name} current {schema_fingerprint(load_schema(name)).hex()}")
        for version in KEPT_VERSIONS[name]:
            older = schema_fingerprint(load_schema(name, version=version)).hex()
            expected.append(f"{name} v{version} {older}")
    assert lines == expected


def _samples(codec: SingleObjectCodec) -> list[tuple[str, bytes, dict[str, Any]]]:
    """(kind, relsec bytes, Avro datum) for every kind of record."""
    out = [
        (e["type"], codec.encode_event(e), event_to_datum(e["type"], e)) for e in EVENTS.values()
    ]
    for alert in (make_alert(), make_alert("retracted", release_rec=None)):
        d = alert.to_dict()
        out.append(("alert", codec.encode_alert(d), alert_to_datum(d)))
    dl = make_dead_letter()
    out.append(("dead_letter", codec.encode_dead_letter(dl), dead_letter_to_datum(dl)))
    return out


def test_java_reads_relsec_records_and_writes_identical_ones(avro_java_classpath: str) -> None:
    codec = SingleObjectCodec()
    samples = _samples(codec)
    lines = _java(avro_java_classpath, "roundtrip", "\n".join(raw.hex() for _, raw, _ in samples))
    assert len(lines) == len(samples)
    for (kind, raw, datum), line in zip(samples, lines, strict=True):
        java_kind, java_json, java_hex = line.split("\t")
        assert java_kind == kind
        assert bytes.fromhex(java_hex) == raw  # Java's BinaryMessageEncoder: same bytes
        record = json.loads(java_json)
        if kind == "dead_letter":  # Java prints bytes as text; compare the other fields
            for field in ("key", "value"):
                record.pop(field)
                datum = {k: v for k, v in datum.items() if k != field}
        assert record == datum


def test_java_resolves_older_version_records_and_relsec_reads_the_result(
    avro_java_classpath: str,
) -> None:
    codec = SingleObjectCodec()
    inputs = []
    for kind, _, datum in _samples(codec):
        for version in KEPT_VERSIONS[kind]:
            old = load_schema(kind, version=version)
            buf = io.BytesIO()
            buf.write(b"\xc3\x01" + schema_fingerprint(old))
            schemaless_writer(buf, parse_schema(old, named_schemas={}), datum)
            inputs.append((kind, buf.getvalue()))
    lines = _java(avro_java_classpath, "roundtrip", "\n".join(raw.hex() for _, raw in inputs))
    decode = {"alert": codec.decode_alert, "dead_letter": codec.decode_dead_letter}
    for (kind, old_raw), line in zip(inputs, lines, strict=True):
        java_kind, _, java_hex = line.split("\t")
        assert java_kind == kind
        java_raw = bytes.fromhex(java_hex)
        assert java_raw[2:10] == schema_fingerprint(load_schema(kind))  # now the current schema
        read = decode.get(kind, codec.decode_event)
        assert read(java_raw) == read(old_raw)  # both sides resolved it the same way


def test_java_and_relsec_both_refuse_an_unknown_fingerprint(avro_java_classpath: str) -> None:
    raw = SingleObjectCodec().encode_event(EVENTS["deploy_minimal"])
    bogus = raw[:2] + bytes(8) + raw[10:]
    (line,) = _java(avro_java_classpath, "roundtrip", bogus.hex())
    assert line.startswith("ERROR\torg.apache.avro.message.MissingSchemaException")
    with pytest.raises(Exception) as err:
        SingleObjectCodec().decode_event(bogus)
    assert getattr(err.value, "reason", None) == UNKNOWN_SCHEMA

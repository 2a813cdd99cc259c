"""The map holds: packages stay layered, and the worker's core knows no Kafka client.

``agents`` (model and engine) imports nothing of ``streams`` or ``schemas`` and no
Kafka, Faust or Avro library; ``schemas`` imports neither. In ``streams.worker`` only
the two runtimes (and the changelog store, which reads the topic back) touch a
Kafka client: the core, the checkpoint machines and the record format run on fakes.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLIENTS = {"confluent_kafka", "faust", "aiokafka", "mode"}


def imports_of(path: Path) -> set[str]:
    """Top-level module names ``path`` imports (at any depth of the file)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def roots(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


def test_agents_and_schemas_import_nothing_above_them() -> None:
    for package, forbidden in (
        ("agents", {"streams", "schemas", "fastavro", "avro", *CLIENTS}),
        ("schemas", {"streams", "agents"}),
    ):
        for path in (REPO / package).rglob("*.py"):
            bad = roots(imports_of(path)) & forbidden
            assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_only_the_runtimes_of_the_worker_touch_a_kafka_client() -> None:
    wiring = {"kafka_runtime.py", "faust_runtime.py", "changelog.py"}
    checked = 0
    for path in (REPO / "streams" / "worker").glob("*.py"):
        if path.name in wiring:
            continue
        bad = roots(imports_of(path)) & CLIENTS
        assert not bad, f"streams/worker/{path.name} imports {sorted(bad)}"
        checked += 1
    assert checked >= 10


def test_the_runtimes_do_not_import_each_other() -> None:
    worker = REPO / "streams" / "worker"
    assert "streams.worker.faust_runtime" not in imports_of(worker / "kafka_runtime.py")
    assert "streams.worker.kafka_runtime" not in imports_of(worker / "faust_runtime.py")


def test_every_module_says_what_it_is() -> None:
    for package in ("agents", "streams"):
        for path in (REPO / package).rglob("*.py"):
            tree = ast.parse(path.read_text(), filename=str(path))
            if path.name == "__init__.py" and not tree.body:
                continue
            assert ast.get_docstring(tree), f"{path.relative_to(REPO)} has no module docstring"

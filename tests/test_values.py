"""The value classes (agents.model.values): what the dataclasses they replaced gave."""

from __future__ import annotations

import inspect

import pytest

from agents.model._pure import loaded_builds, pure_requested
from agents.model.alerts import Alert, Evidence, Recommendation
from agents.model.events import Deploy, Incident, SecurityFlag
from agents.model.values import Value


def _deploy(**changes: object) -> Deploy:
    fields: dict[str, object] = {
        "event_id": "e1",
        "occurred_at_ms": 1_000,
        "source": "argo",
        "service": "checkout",
        "environment": "production",
        "release": "v2",
        "previous_release": "v1",
        "action": "deploy",
    }
    fields.update(changes)
    return Deploy(**fields)  # type: ignore[arg-type]


def test_equal_fields_are_equal_values_with_equal_hashes() -> None:
    a, b = _deploy(), _deploy()
    assert a == b
    assert not a != b  # noqa: SIM202 - `!=` is what is tested
    assert hash(a) == hash(b)
    assert {a: "x"}[b] == "x"
    assert a != _deploy(release="v3")
    assert _deploy(release_aliases=("sha",)) != a


def test_values_of_different_classes_are_never_equal() -> None:
    flag = SecurityFlag("e1", 1_000, "trivy", "checkout", "CVE-1", "v2", "raised", "high", "t")
    incident = Incident("e1", 1_000, "pd", "checkout", "production", "P1", "opened", "sev1", "t")
    assert flag != incident
    assert Evidence("e1", "deploy", 1) != Recommendation("e1", "deploy")
    assert _deploy() != ("e1", 1_000)


def test_every_field_is_listed_in_init_order() -> None:
    deploy = _deploy(team="sre", reason="because", release_aliases=("a",))
    assert dict(zip(Deploy.FIELDS, deploy.values(), strict=True)) == {
        "event_id": "e1",
        "occurred_at_ms": 1_000,
        "source": "argo",
        "service": "checkout",
        "environment": "production",
        "release": "v2",
        "previous_release": "v1",
        "action": "deploy",
        "status": "succeeded",
        "team": "sre",
        "actor": None,
        "reason": "because",
        "incident_id": None,
        "release_aliases": ("a",),
    }


_VALUE_MODULES = (
    "agents/model/events.py",
    "agents/model/alerts.py",
    "agents/engine/core.py",
    "agents/engine/rules.py",
    "agents/engine/state.py",
)


def _value_classes() -> list[tuple[type[Value], list[str]]]:
    """Every Value class of the model and engine, with its __init__'s annotations as
    written in the source (the compiled build keeps none)."""
    import ast
    import importlib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    found = []
    for path in _VALUE_MODULES:
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        for node in ast.walk(ast.parse((root / path).read_text())):
            if isinstance(node, ast.ClassDef) and any(
                getattr(base, "id", None) == "Value" for base in node.bases
            ):
                (init,) = (
                    f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"
                )
                annotations = [
                    ast.unparse(a.annotation)
                    for a in init.args.args[1:]
                    if a.annotation is not None
                ]
                found.append((getattr(module, node.name), annotations))
    return found


def _marker(annotation: str, n: int) -> object:
    """A value of the annotated type, distinct for each ``n``."""
    from agents.engine.core import Disposition

    return {
        "str": f"<{n}>",
        "str | None": f"<{n}>",
        "int": 1000 + n,
        "tuple[str, ...]": (f"<{n}>",),
        "Evidence": Evidence(f"<{n}>", "deploy", n),
        "tuple[Evidence, ...]": (Evidence(f"<{n}>", "deploy", n),),
        "Recommendation | None": Recommendation(f"<{n}>", "text"),
        "Disposition": Disposition.APPLIED,
        "tuple[Alert, ...]": (),
    }[annotation]


def test_fields_values_and_init_agree_in_every_value_class() -> None:
    """Each field is named three times (FIELDS, __init__, values()): a field added in
    one place and forgotten or misplaced in another fails here."""
    classes = _value_classes()
    assert len(classes) >= 12
    for cls, written in classes:
        assert tuple(inspect.signature(cls).parameters) == cls.FIELDS, cls
        assert len(written) == len(cls.FIELDS), cls
        given = {
            name: _marker(a, n) for n, (name, a) in enumerate(zip(cls.FIELDS, written, strict=True))
        }
        if cls is Alert:
            given.update(status="firing", severity="high", evidence_count=1)
        value = cls(**given)
        assert value.values() == tuple(given.values()), cls
        assert tuple(getattr(value, name) for name in cls.FIELDS) == tuple(given.values())
        assert cls(*value.values()) == value


def test_replace_changes_only_the_named_fields() -> None:
    deploy = _deploy()
    moved = deploy.replace(release="v3", previous_release="v2")
    assert (moved.release, moved.previous_release) == ("v3", "v2")
    assert moved.replace(release="v2", previous_release="v1") == deploy
    with pytest.raises(TypeError, match="no field 'relaese'"):
        deploy.replace(relaese="v3")


def test_repr_names_the_class_and_fields() -> None:
    assert repr(Evidence("e1", "deploy", 5)) == (
        "Evidence(event_id='e1', type='deploy', occurred_at_ms=5)"
    )


def test_an_alert_still_checks_its_status_and_severity() -> None:
    with pytest.raises(ValueError, match="not firing or retracted"):
        Alert("a", "r", "open", "high", "s", "e", "v", "t", 1, "x", (), (), None)
    with pytest.raises(ValueError, match="not one of"):
        Alert("a", "r", "firing", "urgent", "s", "e", "v", "t", 1, "x", (), (), None)
    evidence = (Evidence("e1", "deploy", 1), Evidence("e2", "deploy", 2))
    alert = Alert("a", "r", "firing", "high", "s", "e", "v", "t", 1, "x", (), evidence, None)
    assert alert.evidence_count == 2  # never below what it lists


@pytest.mark.skipif(pure_requested(), reason="the pure build's fields are Final to mypy only")
def test_compiled_values_refuse_assignment() -> None:
    assert loaded_builds()["agents.model.values"] == "compiled"
    deploy = _deploy()
    with pytest.raises(AttributeError):
        deploy.release = "v3"  # type: ignore[misc]
    assert isinstance(deploy, Value)


def test_values_pickle_as_their_fields() -> None:
    import pickle

    flag = SecurityFlag("e1", 1, "trivy", "checkout", "CVE-1", "v2", "raised", "high", "t", ("a",))
    assert pickle.loads(pickle.dumps(flag)) == flag

"""Each setting declared once: the flags, the environment read and docs/settings.md built from it.

The static checks read the source: every ``RELSEC_*`` name the code spells is the
variable of exactly one declaration, spelled in one place, and no command reads the
environment around the declarations. The CLI checks build the real parser: each
command's ``--help`` shows, for each of its settings, the default and the variable;
a flag wins over the variable, which wins over the default; a bad value exits 2
naming the variable. docs/settings.md is the generated table, up to date.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from agents.errors import ConfigError
from streams.cli import build_parser, main
from streams.cli.settings import command_settings, every_declaration, settings_table
from streams.settings import (
    DURATION,
    INTEGER,
    TEXT,
    Setting,
    add_flags,
    apply,
    from_env,
    resolve,
)

REPO = Path(__file__).resolve().parents[1]
RELSEC_NAME = re.compile(r"RELSEC_[A-Z0-9_]+")


def source_files() -> list[Path]:
    return sorted([*(REPO / "agents").rglob("*.py"), *(REPO / "streams").rglob("*.py")])


def spelled_variables() -> Counter[str]:
    """Each string constant of the code that is exactly a ``RELSEC_*`` name (docstrings and
    messages that mention one are longer strings), and how many times it is spelled."""
    found: Counter[str] = Counter()
    for path in source_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        # The pieces of an f-string (``f"RELSEC_INGEST_{source}_TOKEN"``) name no variable
        # alone; the declarations built from them are checked by name below.
        pieces = {
            id(part)
            for node in ast.walk(tree)
            if isinstance(node, ast.JoinedStr)
            for part in node.values
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and id(node) not in pieces
                and isinstance(node.value, str)
                and RELSEC_NAME.fullmatch(node.value)
            ):
                found[node.value] += 1
    return found


def declared_variables() -> Counter[str]:
    return Counter(s.env for s in every_declaration() if s.env)


def test_no_two_declarations_name_one_variable() -> None:
    declared = declared_variables()
    assert len(declared) >= 60  # the connection, every command, the gateway's secrets
    assert [name for name, n in declared.items() if n > 1] == []


def test_every_variable_the_code_names_is_declared_and_spelled_in_one_place() -> None:
    spelled = spelled_variables()
    undeclared = sorted(set(spelled) - set(declared_variables()))
    assert undeclared == [], f"read but not declared (add a Setting): {undeclared}"
    twice = sorted(name for name, n in spelled.items() if n > 1)
    assert twice == [], f"spelled in several places (use the declaration's .env): {twice}"


def test_the_commands_read_no_environment_around_their_declarations() -> None:
    for path in (REPO / "streams" / "cli").glob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            call = node.func if isinstance(node, ast.Call) else None
            if isinstance(call, ast.Attribute) and call.attr == "getenv":
                pytest.fail(f"{path.name}:{node.lineno} calls getenv")
            if (
                isinstance(call, ast.Attribute)
                and call.attr == "get"
                and isinstance(call.value, ast.Attribute)
                and call.value.attr == "environ"
            ):
                pytest.fail(f"{path.name}:{node.lineno} reads os.environ.get")
            if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
                pytest.fail(f"{path.name}:{node.lineno} reads os.environ[...]")


# -- --help shows each setting's default and variable ------------------------------


def subparser(parser: argparse.ArgumentParser, path: str) -> argparse.ArgumentParser:
    for word in path.split():
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = actions[0].choices[word]
    return parser


def squeezed(text: str) -> str:
    """``text`` without any whitespace: argparse wraps help at spaces and hyphens."""
    return re.sub(r"\s+", "", text)


def test_every_command_is_covered() -> None:
    assert set(command_settings()) >= {
        "replay",
        "worker",
        "publish",
        "alerts",
        "demo",
        "notify",
        "ingest convert",
        "ingest publish",
        "ingest serve",
        "catalog check",
        "kafka up",
        "topics create",
        "api",
        "check",
    }


@pytest.mark.parametrize("command", sorted(command_settings()))
def test_help_shows_the_default_and_the_variable_of_each_setting(command: str) -> None:
    shown = squeezed(subparser(build_parser(), command).format_help())
    flagged = [s for s in command_settings()[command] if s.option]
    assert flagged, command
    for setting in flagged:
        assert squeezed(f"{setting.option}") in shown
        assert squeezed(f"default {setting.describe_default()}") in shown, setting.name
        if setting.env:
            assert squeezed(f"${setting.env}") in shown, setting.name


def test_the_real_command_prints_it() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", "api", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "port (0 picks a free one) (default 8088; $RELSEC_API_PORT)" in proc.stdout
    assert "--github-api-url" in proc.stdout and "$RELSEC_GITHUB_API_URL" in proc.stdout


# -- flag, then variable, then default ---------------------------------------------

PORT = Setting("port", INTEGER, 8088, "port", env="RELSEC_TEST_PORT")
PATHS = Setting("paths", TEXT, None, "paths", env="RELSEC_TEST_PATHS", repeat=True)
WAIT = Setting("wait_ms", DURATION, 1000, "wait", env="RELSEC_TEST_WAIT", flag="--wait")
TOKEN = Setting("token", TEXT, None, "token", env="RELSEC_TEST_TOKEN", flag=None, secret=True)


def parsed(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_flags(parser, (PORT, PATHS, WAIT, TOKEN))
    return parser.parse_args(argv)


def test_a_flag_wins_over_the_variable_which_wins_over_the_default() -> None:
    env = {"RELSEC_TEST_PORT": "9000", "RELSEC_TEST_WAIT": "2s"}
    assert resolve((PORT, WAIT), parsed("--port", "7000"), env) == {
        "port": 7000,
        "wait_ms": 2000,
    }
    assert resolve((PORT,), parsed(), {"RELSEC_TEST_PORT": ""}) == {"port": 8088}


def test_a_repeated_flag_is_a_list_and_its_variable_holds_paths() -> None:
    env = {"RELSEC_TEST_PATHS": os.pathsep.join(["a.yaml", " ", "dir"])}
    assert resolve((PATHS,), parsed("--paths", "x", "--paths", "y"), env) == {"paths": ["x", "y"]}
    assert resolve((PATHS,), parsed(), env) == {"paths": ["a.yaml", "dir"]}
    assert resolve((PATHS,), parsed(), {}) == {"paths": []}


def test_apply_stores_typed_values_and_from_env_tells_unset_apart() -> None:
    args = apply(parsed("--wait", "90m"), (PORT, WAIT, TOKEN), {"RELSEC_TEST_TOKEN": "s3cret"})
    assert (args.port, args.wait_ms, args.token) == (8088, 90 * 60_000, "s3cret")
    assert "s3cret" not in repr(args) and str(args.token) == "s3cret"
    assert from_env(PORT, {}) is None and from_env(PORT, {"RELSEC_TEST_PORT": "1"}) == 1


def test_a_bad_value_names_its_variable_and_never_shows_a_secret() -> None:
    with pytest.raises(ConfigError, match=r"RELSEC_TEST_PORT='eighty': not a valid integer"):
        resolve((PORT,), parsed(), {"RELSEC_TEST_PORT": "eighty"})
    bad_secret = Setting("pin", INTEGER, None, "pin", env="RELSEC_TEST_PIN", flag=None, secret=True)
    with pytest.raises(ConfigError) as info:
        resolve((bad_secret,), env={"RELSEC_TEST_PIN": "hunter2"})
    assert "hunter2" not in str(info.value) and "RELSEC_TEST_PIN=***" in str(info.value)


def test_a_bad_variable_ends_the_command_with_status_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RELSEC_API_PORT", "eighty")
    assert main(["api"]) == 2
    err = capsys.readouterr().err
    assert "relsec: error: RELSEC_API_PORT='eighty': not a valid integer" in err


def test_a_variable_reaches_the_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Port 9 (discard) on loopback: nothing listens, so the check answers "no verdict".
    monkeypatch.setenv("RELSEC_API_URL", "http://127.0.0.1:9")
    assert main(["check", "checkout", "production", "2.4.0", "--timeout", "5"]) == 3
    assert "http://127.0.0.1:9/v1/check" in capsys.readouterr().err


# -- docs/settings.md ----------------------------------------------------------------


def test_docs_settings_md_is_the_generated_table() -> None:
    committed = (REPO / "docs" / "settings.md").read_text(encoding="utf-8")
    assert committed == settings_table(), "docs/settings.md is stale: relsec settings > it"


def test_the_table_lists_every_declaration_once_per_command() -> None:
    table = settings_table()
    for setting in every_declaration():
        shown: Any = setting.env or setting.option
        assert f"`{shown}`" in table, setting.name
    assert "s3cret" not in table and "| `--api-token`" not in table  # secrets have no flag


def test_the_engines_judgment_settings_reach_its_config_from_the_environment() -> None:
    from agents.engine.names import DEFAULT_MUTABLE_RELEASE_PATTERNS
    from streams.settings import Settings

    env = {
        "RELSEC_ALLOWED_LATENESS": "2h",
        "RELSEC_DUPLICATE_WINDOW": "3d",
        "RELSEC_MUTABLE_RELEASE_PATTERNS": r"rc-.*  (?:.+:)nightly-\d+",
    }
    config = Settings.resolve(env=env).engine_config()
    assert config.allowed_lateness_ms == 2 * 3_600_000
    assert config.duplicate_window_ms == 3 * 86_400_000
    assert config.mutable_release_patterns == (
        *DEFAULT_MUTABLE_RELEASE_PATTERNS, "rc-.*", r"(?:.+:)nightly-\d+"
    )
    assert config.name_policy.is_mutable("rc-7") and config.name_policy.is_mutable("app:nightly-3")
    assert not config.name_policy.is_mutable("2.7.0")
    with pytest.raises(ConfigError, match="RELSEC_MUTABLE_RELEASE_PATTERNS"):
        Settings.resolve(env={"RELSEC_MUTABLE_RELEASE_PATTERNS": "(unclosed"})


def test_every_command_is_registered_by_the_module_main_imports_for_it() -> None:
    """main() registers only the module of the command asked for (start-up time): the
    table of owners must name every command, and the module that really registers it."""
    from streams.cli import COMMAND_MODULES, COMMAND_OWNERS, build_parser

    def commands(parser: argparse.ArgumentParser) -> set[str]:
        (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return set(sub.choices)

    assert commands(build_parser()) == set(COMMAND_OWNERS)
    assert set(COMMAND_OWNERS.values()) == set(COMMAND_MODULES)
    for command, module in COMMAND_OWNERS.items():
        assert command in commands(build_parser((module,))), (command, module)


def test_replay_does_not_import_the_webhook_gateway(tmp_path: Path) -> None:
    events = tmp_path / "none.jsonl"
    events.write_text("")
    probe = (
        "import sys; from streams.cli import main; status = main(['replay', sys.argv[1]]); "
        "print(sorted(m for m in sys.modules if m.startswith(('aiohttp', 'streams.ingest'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(events)], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"

"""Each setting declared once: flags, environment and defaults come from the declaration."""

from __future__ import annotations

import argparse

import pytest

from agents.errors import ConfigError
from streams.cli import build_parser
from streams.settings import (
    CONNECTION,
    DEFAULT_PARTITIONS,
    DURATION,
    INTEGER,
    KAFKA_FLAGS,
    SECURITY,
    Setting,
    Settings,
    add_flags,
    at_least,
    resolve,
)
from streams.worker.options import WORKER_SETTINGS, WorkerOptions


def worker_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["worker", *argv])


def worker_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            sub: argparse.ArgumentParser = action.choices["worker"]
            return sub
    raise AssertionError("no worker subcommand")


def test_every_worker_option_has_its_flag_and_environment_variable() -> None:
    worker = worker_parser()
    flags = {opt for action in worker._actions for opt in action.option_strings}
    help_text = "".join(worker.format_help().split())
    for setting in WORKER_SETTINGS:
        assert setting.option in flags, setting.name
        assert setting.env is not None and setting.env.startswith("RELSEC_"), setting.name
        assert "$" + setting.env in help_text, setting.name
    names = [s.env for s in (*CONNECTION, *SECURITY, *WORKER_SETTINGS) if s.env]
    assert len(names) == len(set(names)), "one variable per setting"


def test_a_flag_wins_over_the_environment_which_wins_over_the_default() -> None:
    env = {"RELSEC_MERGE_IDLE_MS": "700", "RELSEC_SLICE_EVENTS": "300"}
    values = resolve(WORKER_SETTINGS, worker_args("--slice-events", "50"), env)
    assert (values["slice_events"], values["merge_idle_ms"]) == (50, 700)
    assert values["health_stall_ms"] == 15_000  # the declared default
    assert resolve(WORKER_SETTINGS, worker_args(), {})["merge_idle_ms"] == 2_000


def test_defaults_live_in_the_declarations_only() -> None:
    options = WorkerOptions()
    for setting in WORKER_SETTINGS:
        assert getattr(options, setting.name) == setting.default, setting.name
    assert options.partitions == DEFAULT_PARTITIONS
    built = WorkerOptions.from_values(resolve(WORKER_SETTINGS, worker_args(), {}), 3)
    assert built == WorkerOptions(partitions=3)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--slice-events", "0"], {}, r"--slice-events=0: must be at least 1"),
        (["--merge-idle-ms", "soon"], {}, r"--merge-idle-ms='soon': not a valid integer"),
        ([], {"RELSEC_MERGE_IDLE_MS": "-5"}, r"RELSEC_MERGE_IDLE_MS=-5: must be at least 0"),
        ([], {"RELSEC_EXACTLY_ONCE": "perhaps"}, r"RELSEC_EXACTLY_ONCE='perhaps'"),
        ([], {"RELSEC_RUNTIME": "flink"}, r"RELSEC_RUNTIME='flink': must be one of kafka, faust"),
    ],
)
def test_bad_values_name_their_flag_or_variable(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve(WORKER_SETTINGS, worker_args(*argv), env)


def test_values_set_in_code_get_the_same_checks() -> None:
    with pytest.raises(ConfigError, match="batch_records=0: must be at least 1"):
        WorkerOptions(batch_records=0)
    with pytest.raises(ConfigError, match="must be one of kafka, faust"):
        WorkerOptions(runtime="flink")


def test_booleans_from_the_environment() -> None:
    assert resolve(WORKER_SETTINGS, worker_args(), {"RELSEC_EXACTLY_ONCE": "true"})["exactly_once"]
    assert not resolve(WORKER_SETTINGS, worker_args(), {"RELSEC_EXACTLY_ONCE": "0"})["exactly_once"]
    assert resolve(WORKER_SETTINGS, worker_args("--exactly-once"), {})["exactly_once"]


def test_the_help_says_each_default_and_variable() -> None:
    help_text = " ".join(worker_parser().format_help().split())
    assert "(default 15000; $RELSEC_HEALTH_STALL_MS)" in help_text
    assert "--allowed-lateness DURATION" in help_text and "(default 24h;" in help_text
    parser = argparse.ArgumentParser()
    add_flags(parser, KAFKA_FLAGS)
    text = " ".join(parser.format_help().split())
    assert "default localhost:9092; $RELSEC_BOOTSTRAP_SERVERS" in text
    assert "default relsec.; $RELSEC_TOPIC_PREFIX" in text


def test_connection_settings_resolve_as_before() -> None:
    env = {"RELSEC_TOPIC_PREFIX": "team-a.", "RELSEC_ALLOWED_LATENESS": "2h"}
    settings = Settings.resolve(bootstrap_servers="kafka:9092", env=env)
    assert settings.bootstrap_servers == "kafka:9092"
    assert settings.topics.prefix == "team-a." and settings.allowed_lateness_ms == 7_200_000
    assert Settings.resolve(allowed_lateness="30m", env=env).allowed_lateness_ms == 1_800_000
    with pytest.raises(ConfigError, match="RELSEC_ALLOWED_LATENESS='soon'"):
        Settings.resolve(env={"RELSEC_ALLOWED_LATENESS": "soon"})


def test_secrets_never_appear_in_messages() -> None:
    env = {"RELSEC_KAFKA_SASL_PASSWORD": "hunter2", "RELSEC_KAFKA_SECURITY_PROTOCOL": "bogus"}
    with pytest.raises(ConfigError) as caught:
        Settings.resolve(env=env)
    assert "hunter2" not in str(caught.value)
    secret = Setting("token", INTEGER, None, "a secret number", env="RELSEC_T", secret=True)
    with pytest.raises(ConfigError) as caught:
        resolve([secret], env={"RELSEC_T": "hunter2"})
    assert "hunter2" not in str(caught.value) and "***" in str(caught.value)


def test_another_command_adopts_the_mechanism_with_a_tuple_of_declarations() -> None:
    mine = (
        Setting("grouping_window_ms", DURATION, 300_000, "window", env="RELSEC_GROUPING_WINDOW"),
        Setting("retries", INTEGER, 3, "retries", env="RELSEC_RETRIES", check=at_least(0)),
    )
    parser = argparse.ArgumentParser()
    add_flags(parser, mine)
    args = parser.parse_args(["--grouping-window-ms", "10m"])
    assert resolve(mine, args, {"RELSEC_RETRIES": "5"}) == {
        "grouping_window_ms": 600_000,
        "retries": 5,
    }
    assert "(default 5m; $RELSEC_GROUPING_WINDOW)" in " ".join(parser.format_help().split())

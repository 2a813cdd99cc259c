"""The check, in process, against engine states built by the engine: every rule outcome a
change can meet, the policy's mapping, and that asking changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.errors import ConfigError, ValidationError
from agents.model.timefmt import parse_rfc3339_ms
from streams.api.check import CheckRequest, run_check, verdict_text
from streams.api.policy import DEFAULT_POLICY, load_policy, policy_from_obj
from tests.api.helpers import SEED_STORY, build_model, load_events
from tests.engine.factory import ENV, SERVICE, deploy, flag, incident, ms, rollback

SEED_NOW = parse_rfc3339_ms("2026-03-05T00:00:00Z")


@pytest.fixture(scope="module")
def seed():  # type: ignore[no-untyped-def]
    return build_model(load_events(SEED_STORY), SEED_NOW)


def check(built, service, env, release, action="deploy", policy=DEFAULT_POLICY, **kw):  # type: ignore[no-untyped-def]
    request = CheckRequest(service, env, release, action, **kw)
    return run_check(built.model.engine(service), request, policy, built.model.clock())


def test_rollback_to_the_flagged_release_of_the_seed_story_is_denied(seed) -> None:  # type: ignore[no-untyped-def]
    answer = check(seed, "checkout-api", "production", "2.7.0", "rollback")
    assert answer["verdict"] == "deny"
    assert answer["running_release"] == "2.8.0"
    [reason] = answer["reasons"]
    assert reason["rule"] == "rollback-to-flagged-release"
    assert reason["severity"] == "critical"
    assert reason["verdict"] == "deny"
    assert [f["flag_id"] for f in reason["flags"]] == ["CVE-2026-20417"]
    assert reason["flags"][0]["fixed_in"] == "2.8.0"
    assert "CVE-2026-20417" in reason["vulnerabilities"]
    # The fix (2.8.0) was rolled back from during INC-4711 within 7 days: nothing qualifies.
    assert answer["recommendation"]["release"] is None
    assert "coordinate" in answer["recommendation"]["text"]
    text = verdict_text(answer)
    assert text.startswith("DENY: rollback of checkout-api production to 2.7.0")
    assert "CVE-2026-20417" in text


def test_deploying_the_flagged_release_is_denied_by_flagged_release_deployed(seed) -> None:  # type: ignore[no-untyped-def]
    answer = check(seed, "checkout-api", "production", "2.7.0", "deploy")
    assert answer["verdict"] == "deny"
    assert [r["rule"] for r in answer["reasons"]] == ["flagged-release-deployed"]


def test_redeploying_a_release_rolled_back_during_an_incident_warns_and_names_the_rollback(
    seed,  # type: ignore[no-untyped-def]
) -> None:
    answer = check(seed, "checkout-api", "production", "2.8.0", "deploy")
    assert answer["verdict"] == "warn"
    [reason] = answer["reasons"]
    assert reason["rule"] == "redeploy-of-rolled-back-release"
    assert reason["rollbacks"] == [
        {
            "event_id": "demo-argocd-103",
            "occurred_at": "2026-03-04T09:20:00Z",
            "from_release": "2.8.0",
            "incident_id": "INC-4711",
        }
    ]


def test_the_seven_day_window_is_judged_at_now(seed) -> None:  # type: ignore[no-untyped-def]
    later = build_model(load_events(SEED_STORY), SEED_NOW + 8 * 86_400_000)
    answer = check(later, "checkout-api", "production", "2.8.0", "deploy")
    assert answer["verdict"] == "allow" and answer["reasons"] == []
    assert answer["evaluated_at"] == "2026-03-13T00:00:00Z"


def test_a_new_release_is_allowed_and_nothing_fires(seed) -> None:  # type: ignore[no-untyped-def]
    answer = check(seed, "checkout-api", "production", "2.9.0", "deploy")
    assert answer["verdict"] == "allow"
    assert answer["reasons"] == []
    assert answer["recommendation"] is None
    assert answer["known_service"] is True


def test_a_rollback_to_a_clean_release_is_allowed_with_the_info_reason(seed) -> None:  # type: ignore[no-untyped-def]
    answer = check(seed, "checkout-api", "production", "2.9.0", "rollback")
    assert answer["verdict"] == "allow"
    assert [r["rule"] for r in answer["reasons"]] == ["rollback-performed"]
    assert answer["reasons"][0]["verdict"] == "allow"


def test_a_security_change_during_an_open_incident_warns_and_names_the_incident() -> None:
    events = [
        deploy("1.0.0", ms(hours=1)),
        incident("INC-1", ms(hours=2)),
    ]
    built = build_model(events, ms(hours=3))
    answer = check(built, SERVICE, ENV, "1.0.1", "deploy", team="security")
    assert answer["verdict"] == "warn"
    [reason] = answer["reasons"]
    assert reason["rule"] == "security-change-during-incident"
    assert [i["incident_id"] for i in reason["open_incidents"]] == ["INC-1"]
    assert [i["incident_id"] for i in answer["open_incidents"]] == ["INC-1"]
    # The same change by the SRE team fires nothing.
    assert check(built, SERVICE, ENV, "1.0.1", "deploy", team="sre")["verdict"] == "allow"


def test_a_second_reversal_within_a_day_warns_as_a_flip_flop() -> None:
    events = [
        deploy("A", ms(hours=1)),
        deploy("B", ms(hours=2)),
        deploy("A", ms(hours=3)),
    ]
    built = build_model(events, ms(hours=4))
    answer = check(built, SERVICE, ENV, "B", "deploy")
    assert answer["verdict"] == "warn"
    assert [r["rule"] for r in answer["reasons"]] == ["release-flip-flop"]


def test_rollback_during_an_incident_to_a_flagged_release_names_flags_and_open_incident() -> None:
    events = [
        deploy("1.0", ms(hours=1)),
        flag("CVE-2026-1", "1.0", ms(hours=2), severity="high", fixed_in="1.2"),
        flag("CVE-2026-2", "1.0", ms(hours=2, minutes=1), severity="medium"),
        deploy("1.1", ms(hours=3)),
        incident("INC-9", ms(hours=4)),
    ]
    built = build_model(events, ms(hours=5))
    answer = check(built, SERVICE, ENV, "1.0", "rollback")
    [reason] = answer["reasons"]
    assert reason["rule"] == "rollback-to-flagged-release"
    assert reason["severity"] == "high"
    # The worst flag is high: the default policy warns.
    assert reason["policy_key"] == "high" and answer["verdict"] == "warn"
    assert [f["flag_id"] for f in reason["flags"]] == ["CVE-2026-1", "CVE-2026-2"]
    assert [i["incident_id"] for i in reason["open_incidents"]] == ["INC-9"]
    assert "during incident INC-9" in reason["summary"]
    # 1.2 fixes the flag and was never rolled back from: it is the recommendation.
    assert answer["recommendation"]["release"] == "1.2"


def test_flag_severity_keys_the_policy_not_the_alerts_severity() -> None:
    events = [deploy("1.0", ms(hours=1)), flag("CVE-LOW", "2.0", ms(hours=2), severity="low")]
    built = build_model(events, ms(hours=3))
    answer = check(built, SERVICE, ENV, "2.0", "deploy")
    [reason] = answer["reasons"]
    assert reason["rule"] == "flagged-release-deployed"
    assert reason["severity"] == "high"  # SPEC: critical if a flag is critical, else high
    assert reason["policy_key"] == "low"
    assert answer["verdict"] == "allow"
    strict = policy_from_obj({"rules": {"flagged-release-deployed": "deny"}}, "test")
    assert check(built, SERVICE, ENV, "2.0", "deploy", policy=strict)["verdict"] == "deny"


def test_a_cleared_flag_no_longer_counts() -> None:
    events = [
        deploy("1.0", ms(hours=1)),
        flag("CVE-X", "2.0", ms(hours=2), severity="critical"),
        flag("CVE-X", "2.0", ms(hours=3), status="risk_accepted", severity="critical"),
    ]
    built = build_model(events, ms(hours=4))
    assert check(built, SERVICE, ENV, "2.0", "deploy")["verdict"] == "allow"


def test_an_unknown_service_follows_the_policy(seed) -> None:  # type: ignore[no-untyped-def]
    answer = check(seed, "no-such-service", "production", "1.0")
    assert answer["verdict"] == "allow" and answer["known_service"] is False
    assert "no state for this service" in verdict_text(answer)
    closed = policy_from_obj({"unknown_service": "deny"}, "test")
    assert check(seed, "no-such-service", "production", "1.0", policy=closed)["verdict"] == "deny"


def test_asking_changes_no_state(seed) -> None:  # type: ignore[no-untyped-def]
    engine = seed.model.engine("checkout-api")
    before = engine.to_bytes()
    first = check(seed, "checkout-api", "production", "2.7.0", "rollback")
    for release, action in (("2.7.0", "rollback"), ("2.8.0", "deploy"), ("3.0", "deploy")):
        check(seed, "checkout-api", "production", release, action)
    assert engine.to_bytes() == before
    assert check(seed, "checkout-api", "production", "2.7.0", "rollback") == first


def test_the_preview_is_the_engines_own_outcome() -> None:
    """What the check says would fire is what the engine fires when the change happens."""
    events = [
        deploy("1.0", ms(hours=1)),
        flag("CVE-1", "0.9", ms(hours=2), severity="critical"),
        deploy("1.1", ms(hours=3)),
        incident("INC-2", ms(hours=4)),
    ]
    built = build_model(events, ms(hours=5))
    answer = check(built, SERVICE, ENV, "0.9", "rollback")
    happened = rollback("0.9", ms(hours=5), previous="1.1")
    fired = built.engine.process(happened, ms(hours=5)).alerts
    assert sorted(r["rule"] for r in answer["reasons"]) == sorted(a.rule for a in fired)
    assert [r["severity"] for r in answer["reasons"]] == [a.severity for a in fired]


def test_bad_requests_name_the_field() -> None:
    with pytest.raises(ValidationError) as err:
        CheckRequest.from_params({"service": "a", "environment": "b"})
    assert err.value.field == "release"
    with pytest.raises(ValidationError) as err:
        CheckRequest.from_params(
            {"service": "a", "environment": "b", "release": "c", "action": "x"}
        )
    assert err.value.field == "action"
    built = build_model([], SEED_NOW)
    too_long = CheckRequest("s" * 201, "production", "1.0")
    with pytest.raises(ValidationError) as err:
        run_check(None, too_long, DEFAULT_POLICY, built.model.clock())
    assert err.value.field == "service"


def test_policy_files_are_validated_with_the_key_named(tmp_path: Path) -> None:
    good = tmp_path / "policy.yaml"
    good.write_text("rules:\n  redeploy-of-rolled-back-release: deny\ndefault: deny\n")
    policy = load_policy(str(good))
    assert policy.verdict_for("redeploy-of-rolled-back-release", "high") == "deny"
    assert policy.verdict_for("release-flip-flop", "high") == "deny"  # default
    for text, needle in (
        ("rules:\n  no-such-rule: deny\n", "rules.no-such-rule"),
        ("rules:\n  release-flip-flop: block\n", "rules.release-flip-flop"),
        ("rules:\n  flagged-release-deployed: {severe: deny}\n", "flagged-release-deployed.severe"),
        ("colour: blue\n", "unknown key"),
        ("rules: [\n", "not valid YAML"),
    ):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ConfigError) as err:
            load_policy(str(bad))
        assert needle in str(err.value) and str(bad) in str(err.value)


def test_a_state_stored_in_parts_reads_as_the_same_verdict(seed) -> None:  # type: ignore[no-untyped-def]
    """A burst's state is split into parts by the worker; the read model joins them."""
    split = build_model(load_events(SEED_STORY), SEED_NOW, state_value_budget=600)
    assert split.model.bad_records == {}
    whole = check(seed, "checkout-api", "production", "2.7.0", "rollback")
    parted = check(split, "checkout-api", "production", "2.7.0", "rollback")
    assert parted == whole
    assert parted["verdict"] == "deny"
    assert len(split.model.parts) == 0  # every part was claimed by its head


def test_a_head_whose_part_is_missing_counts_as_bad_and_names_the_part() -> None:
    from streams.worker.state_records import StoredState, encode_state

    built = build_model([], SEED_NOW)
    *parts, head = encode_state("cl", b"svc", StoredState({}, b"x" * 5000), "c9", 0, 600)
    assert len(parts) > 1
    for record in parts[1:]:
        assert record.key is not None
        built.model.parts.put(record.key, record.value)
    assert head.value is not None
    built.model.put_state("svc", head.value, 0, 7, SEED_NOW)
    assert built.model.bad_records == {"changelog": 1}
    assert built.model.last_error is not None
    assert "part 1 of" in built.model.last_error and "offset 7" in built.model.last_error

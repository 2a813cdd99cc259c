"""Which rule outcomes deny a change, which only warn: the check's policy (YAML).

The check asks the engine which rules would fire if the change happened now; the
policy maps each of those alerts to ``allow``, ``warn`` or ``deny``. The verdict is
the worst of them (``allow`` when none fires). A rule's entry is one verdict, or a
mapping by severity: for the two flagged-release rules the severity of the worst
active flag on the release (so a release with only ``low`` findings can be let
through while ``critical`` ones deny), for the others the alert's severity::

    version: 1
    rules:
      rollback-to-flagged-release: {critical: deny, high: warn, medium: warn, low: allow}
      flagged-release-deployed:    {critical: deny, high: warn, medium: warn, low: allow}
      redeploy-of-rolled-back-release: warn
      release-flip-flop: warn
      security-change-during-incident: warn
      rollback-performed: allow
    default: warn            # a rule or severity not listed
    unknown_service: allow   # a service relsec has no state for

:data:`DEFAULT_POLICY` is that file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from agents.engine.rules import RULES_BY_ID
from agents.errors import ConfigError
from agents.model.alerts import SEVERITIES

ALLOW: Final = "allow"
WARN: Final = "warn"
DENY: Final = "deny"
VERDICTS: Final = (ALLOW, WARN, DENY)
FLAG_SEVERITY_RULES: Final = frozenset({"rollback-to-flagged-release", "flagged-release-deployed"})
"""Rules whose entry is keyed by the worst active flag's severity, not the alert's."""

RuleEntry = str | dict[str, str]


def worst(verdicts: list[str]) -> str:
    """The most severe verdict (``allow`` for none)."""
    return max(verdicts, key=VERDICTS.index, default=ALLOW)


@dataclass(frozen=True, slots=True)
class Policy:
    """The mapping from rule outcomes to verdicts."""

    rules: Mapping[str, RuleEntry] = field(default_factory=dict)
    default: str = WARN
    unknown_service: str = ALLOW
    source: str = "built-in default"

    def verdict_for(self, rule: str, severity: str) -> str:
        entry = self.rules.get(rule)
        if entry is None:
            return self.default
        if isinstance(entry, str):
            return entry
        return entry.get(severity, self.default)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "rules": {k: v if isinstance(v, str) else dict(v) for k, v in self.rules.items()},
            "default": self.default,
            "unknown_service": self.unknown_service,
        }


DEFAULT_POLICY: Final = Policy(
    rules={
        "rollback-to-flagged-release": {
            "critical": DENY, "high": WARN, "medium": WARN, "low": ALLOW,
        },
        "flagged-release-deployed": {"critical": DENY, "high": WARN, "medium": WARN, "low": ALLOW},
        "redeploy-of-rolled-back-release": WARN,
        "release-flip-flop": WARN,
        "security-change-during-incident": WARN,
        "rollback-performed": ALLOW,
    },
)


def _verdict(value: Any, where: str) -> str:
    if not isinstance(value, str) or value not in VERDICTS:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(VERDICTS)}")
    return value


def policy_from_obj(obj: Any, source: str) -> Policy:
    """Validate a decoded policy document; :class:`ConfigError` names the bad key."""
    if not isinstance(obj, Mapping):
        raise ConfigError(f"{source}: a policy is a mapping with 'rules', got {type(obj).__name__}")
    unknown = set(obj) - {"version", "rules", "default", "unknown_service"}
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    if obj.get("version", 1) != 1:
        raise ConfigError(f"{source}: version {obj.get('version')!r} is not supported (1)")
    raw_rules = obj.get("rules") or {}
    if not isinstance(raw_rules, Mapping):
        raise ConfigError(f"{source}: 'rules' must be a mapping of rule id to verdict")
    rules: dict[str, RuleEntry] = {}
    for rule, entry in raw_rules.items():
        where = f"{source}: rules.{rule}"
        if rule not in RULES_BY_ID:
            raise ConfigError(f"{where}: unknown rule (one of {', '.join(sorted(RULES_BY_ID))})")
        if isinstance(entry, Mapping):
            by_severity: dict[str, str] = {}
            for severity, value in entry.items():
                if severity not in SEVERITIES:
                    raise ConfigError(
                        f"{where}.{severity}: not a severity ({', '.join(SEVERITIES)})"
                    )
                by_severity[str(severity)] = _verdict(value, f"{where}.{severity}")
            rules[str(rule)] = by_severity
        else:
            rules[str(rule)] = _verdict(entry, where)
    return Policy(
        rules=rules,
        default=_verdict(obj.get("default", WARN), f"{source}: default"),
        unknown_service=_verdict(obj.get("unknown_service", ALLOW), f"{source}: unknown_service"),
        source=source,
    )


def load_policy(path: str | None) -> Policy:
    """The policy in a YAML file, or :data:`DEFAULT_POLICY` when ``path`` is ``None``."""
    if path is None:
        return DEFAULT_POLICY
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the check policy {path}: {exc.strerror}") from None
    try:
        obj = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None
    return policy_from_obj(obj, path)

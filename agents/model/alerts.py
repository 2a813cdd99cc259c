"""Alert values (SPEC §4) and their JSON form.

An alert's identity is (rule, service, environment, release, trigger); its
``alert_id`` is a hash of that identity, so every replay, restart or second
worker names the same alert the same way. ``detected_at`` is wall-clock time
stamped by whoever ran the engine and is not part of the identity, nor of
:meth:`Alert.same_content`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any, Final

from agents.model.timefmt import format_rfc3339_ms, parse_rfc3339_ms

FIRING: Final = "firing"
RETRACTED: Final = "retracted"
SEVERITIES: Final = ("info", "low", "medium", "high", "critical")


def alert_id_for(rule: str, service: str, environment: str, release: str, trigger: str) -> str:
    """Deterministic id of an alert identity: 32 hex chars of SHA-256 over its parts."""
    material = "\x1f".join((rule, service, environment, release, trigger)).encode("utf-8")
    return hashlib.sha256(material).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Evidence:
    """One event that made a rule fire."""

    event_id: str
    type: str
    occurred_at_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "type": self.type,
            "occurred_at": format_rfc3339_ms(self.occurred_at_ms),
        }


@dataclass(frozen=True, slots=True)
class Recommendation:
    """The release to move to (or ``None``) and why."""

    release: str | None
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"release": self.release, "text": self.text}


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert event: a firing or a retraction of an alert identity."""

    alert_id: str
    rule: str
    status: str
    severity: str
    service: str
    environment: str
    release: str
    trigger: str
    occurred_at_ms: int
    summary: str
    notify: tuple[str, ...]
    evidence: tuple[Evidence, ...]
    recommendation: Recommendation | None
    detected_at_ms: int = 0
    release_aliases: tuple[str, ...] = ()
    """SPEC §8: the other known names of ``release`` at the trigger."""
    evidence_count: int = 0
    """How many events made the rule fire; ``evidence`` may list fewer (it is capped where
    the alert is built). Below ``len(evidence)`` (0 when not given) it reads as that."""

    def __post_init__(self) -> None:
        if self.evidence_count < len(self.evidence):
            object.__setattr__(self, "evidence_count", len(self.evidence))
        if self.status not in (FIRING, RETRACTED):
            raise ValueError(f"alert status {self.status!r} is not firing or retracted")
        if self.severity not in SEVERITIES:
            raise ValueError(f"alert severity {self.severity!r} is not one of {SEVERITIES}")

    def same_content(self, other: Alert) -> bool:
        """Equal in everything but ``detected_at``."""
        return (
            self.alert_id == other.alert_id
            and self.status == other.status
            and self.severity == other.severity
            and self.release == other.release
            and self.occurred_at_ms == other.occurred_at_ms
            and self.summary == other.summary
            and self.evidence == other.evidence
            and self.recommendation == other.recommendation
            and self.evidence_count == other.evidence_count
            and self.release_aliases == other.release_aliases
            and self.rule == other.rule
            and self.service == other.service
            and self.environment == other.environment
            and self.trigger == other.trigger
            and self.notify == other.notify
        )

    def with_status(self, status: str, detected_at_ms: int) -> Alert:
        return replace(self, status=status, detected_at_ms=detected_at_ms)

    def to_dict(self) -> dict[str, Any]:
        """The SPEC §4 JSON object; ``release_aliases`` and ``evidence_count`` (SPEC §8, the
        evidence cap) only when they say what ``release`` and ``evidence`` do not."""
        out: dict[str, Any] = {
            "alert_id": self.alert_id,
            "rule": self.rule,
            "status": self.status,
            "severity": self.severity,
            "service": self.service,
            "environment": self.environment,
            "release": self.release,
            "trigger": self.trigger,
            "occurred_at": format_rfc3339_ms(self.occurred_at_ms),
            "detected_at": format_rfc3339_ms(self.detected_at_ms),
            "summary": self.summary,
            "notify": list(self.notify),
            "evidence": [e.to_dict() for e in self.evidence],
            "recommendation": self.recommendation.to_dict() if self.recommendation else None,
        }
        if self.release_aliases:
            out["release_aliases"] = list(self.release_aliases)
        if self.evidence_count > len(self.evidence):
            out["evidence_count"] = self.evidence_count
        return out

    @staticmethod
    def from_dict(obj: dict[str, Any]) -> Alert:
        rec = obj.get("recommendation")
        return Alert(
            alert_id=obj["alert_id"],
            rule=obj["rule"],
            status=obj["status"],
            severity=obj["severity"],
            service=obj["service"],
            environment=obj["environment"],
            release=obj["release"],
            trigger=obj.get("trigger", ""),
            occurred_at_ms=parse_rfc3339_ms(obj["occurred_at"]),
            summary=obj["summary"],
            notify=tuple(obj["notify"]),
            evidence=tuple(
                Evidence(e["event_id"], e["type"], parse_rfc3339_ms(e["occurred_at"]))
                for e in obj["evidence"]
            ),
            recommendation=Recommendation(rec["release"], rec["text"]) if rec else None,
            detected_at_ms=parse_rfc3339_ms(obj["detected_at"]) if obj.get("detected_at") else 0,
            release_aliases=tuple(obj.get("release_aliases") or ()),
            evidence_count=int(obj.get("evidence_count") or 0),
        )

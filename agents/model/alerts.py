"""Alert values (SPEC §4) and their JSON form.

An alert's identity is (rule, service, environment, release, trigger); its
``alert_id`` is a hash of that identity, so every replay, restart or second
worker names the same alert the same way. ``detected_at`` is wall-clock time
stamped by whoever ran the engine and is not part of the identity, nor of
:meth:`Alert.same_content`.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar, Final

from agents.model.timefmt import format_rfc3339_ms, parse_rfc3339_ms
from agents.model.values import Value

FIRING: Final = "firing"
RETRACTED: Final = "retracted"
SEVERITIES: Final = ("info", "low", "medium", "high", "critical")


_SHA256: Final = hashlib.sha256()
"""An empty SHA-256 to copy: ``hashlib.sha256(data)`` looks the digest up in OpenSSL on
every call, which costs as much as hashing a short identity (1.25 against 0.62 µs)."""


def alert_id_for(rule: str, service: str, environment: str, release: str, trigger: str) -> str:
    """Deterministic id of an alert identity: 32 hex chars of SHA-256 over its parts."""
    digest = _SHA256.copy()
    digest.update("\x1f".join((rule, service, environment, release, trigger)).encode("utf-8"))
    return digest.hexdigest()[:32]


class Evidence(Value):
    """One event that made a rule fire."""

    FIELDS: ClassVar[tuple[str, ...]] = ("event_id", "type", "occurred_at_ms")
    __slots__ = FIELDS

    def __init__(self, event_id: str, type: str, occurred_at_ms: int) -> None:
        self.event_id: Final = event_id
        self.type: Final = type
        self.occurred_at_ms: Final = occurred_at_ms

    def values(self) -> tuple[object, ...]:
        return (self.event_id, self.type, self.occurred_at_ms)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "type": self.type,
            "occurred_at": format_rfc3339_ms(self.occurred_at_ms),
        }


class Recommendation(Value):
    """The release to move to (or ``None``) and why."""

    FIELDS: ClassVar[tuple[str, ...]] = ("release", "text")
    __slots__ = FIELDS

    def __init__(self, release: str | None, text: str) -> None:
        self.release: Final = release
        self.text: Final = text

    def values(self) -> tuple[object, ...]:
        return (self.release, self.text)

    def to_dict(self) -> dict[str, Any]:
        return {"release": self.release, "text": self.text}


class Alert(Value):
    """One alert event: a firing or a retraction of an alert identity."""

    FIELDS: ClassVar[tuple[str, ...]] = (
        "alert_id",
        "rule",
        "status",
        "severity",
        "service",
        "environment",
        "release",
        "trigger",
        "occurred_at_ms",
        "summary",
        "notify",
        "evidence",
        "recommendation",
        "detected_at_ms",
        "release_aliases",
        "evidence_count",
    )
    __slots__ = FIELDS

    def __init__(
        self,
        alert_id: str,
        rule: str,
        status: str,
        severity: str,
        service: str,
        environment: str,
        release: str,
        trigger: str,
        occurred_at_ms: int,
        summary: str,
        notify: tuple[str, ...],
        evidence: tuple[Evidence, ...],
        recommendation: Recommendation | None,
        detected_at_ms: int = 0,
        release_aliases: tuple[str, ...] = (),
        evidence_count: int = 0,
    ) -> None:
        if status != FIRING and status != RETRACTED:
            raise ValueError(f"alert status {status!r} is not firing or retracted")
        if severity not in SEVERITIES:
            raise ValueError(f"alert severity {severity!r} is not one of {SEVERITIES}")
        self.alert_id: Final = alert_id
        self.rule: Final = rule
        self.status: Final = status
        self.severity: Final = severity
        self.service: Final = service
        self.environment: Final = environment
        self.release: Final = release
        self.trigger: Final = trigger
        self.occurred_at_ms: Final = occurred_at_ms
        self.summary: Final = summary
        self.notify: Final = notify
        self.evidence: Final = evidence
        self.recommendation: Final = recommendation
        self.detected_at_ms: Final = detected_at_ms
        self.release_aliases: Final = release_aliases
        """SPEC §8: the other known names of ``release`` at the trigger."""
        self.evidence_count: Final = max(evidence_count, len(evidence))
        """How many events made the rule fire; ``evidence`` may list fewer (it is capped
        where the alert is built). Never below ``len(evidence)`` (given as 0: that)."""

    def values(self) -> tuple[object, ...]:
        return (
            self.alert_id,
            self.rule,
            self.status,
            self.severity,
            self.service,
            self.environment,
            self.release,
            self.trigger,
            self.occurred_at_ms,
            self.summary,
            self.notify,
            self.evidence,
            self.recommendation,
            self.detected_at_ms,
            self.release_aliases,
            self.evidence_count,
        )

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
        return self.replace(status=status, detected_at_ms=detected_at_ms)

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

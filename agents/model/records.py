"""The msgspec Structs of SPEC §1's three event shapes, for the fast path of validation.

:mod:`agents.model.wire` decodes JSON records into these and turns them into events; the
Structs live apart because mypyc cannot compile a module that defines them (msgspec
Structs are a C type with their own metaclass), while the conversion, which is most of
the fast path's Python, compiles. Each rule here mirrors
:func:`agents.model.events.parse_event`'s and is at least as strict (see ``wire.py``).
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from agents.model.events import (
    MAX_ENVIRONMENT_CHARS,
    MAX_ID_CHARS,
    MAX_RELEASE_ALIASES,
    MAX_TEXT_CHARS,
    MAX_VULNERABILITIES,
)

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_CHARS)]
Environment = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ENVIRONMENT_CHARS)]
OptionalName = Annotated[str, msgspec.Meta(max_length=MAX_ID_CHARS)] | None
"""``""`` reads as null, as in ``parse_event``."""
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT_CHARS)]
OptionalText = Text | None
Vulnerabilities = Annotated[list[Name], msgspec.Meta(max_length=MAX_VULNERABILITIES)] | None
Aliases = Annotated[list[Name], msgspec.Meta(max_length=MAX_RELEASE_ALIASES)] | None

# The Structs hold only strings and lists of strings (no cycles), so the garbage
# collector need not track them (``gc=False``: faster to create and to free).


class DeployRecord(
    msgspec.Struct, tag_field="type", tag="deploy", forbid_unknown_fields=True, gc=False
):
    event_id: Name
    occurred_at: str
    source: Name
    service: Name
    environment: Environment
    release: Name
    action: Literal["deploy", "rollback"]
    previous_release: OptionalName = None
    status: Literal["succeeded", "failed"] | None = None
    team: Literal["sre", "security", "dev", ""] | None = None
    actor: OptionalText = None
    reason: OptionalText = None
    incident_id: OptionalName = None
    release_aliases: Aliases = None


class IncidentRecord(
    msgspec.Struct, tag_field="type", tag="incident", forbid_unknown_fields=True, gc=False
):
    event_id: Name
    occurred_at: str
    source: Name
    service: Name
    environment: Environment
    incident_id: Name
    status: Literal["opened", "acknowledged", "resolved"]
    severity: Literal["sev1", "sev2", "sev3", "sev4", "sev5"]
    title: Text
    suspected_release: OptionalName = None
    release_aliases: Aliases = None


class SecurityFlagRecord(
    msgspec.Struct, tag_field="type", tag="security_flag", forbid_unknown_fields=True, gc=False
):
    event_id: Name
    occurred_at: str
    source: Name
    service: Name
    flag_id: Name
    release: Name
    status: Literal["raised", "cleared", "risk_accepted"]
    severity: Literal["critical", "high", "medium", "low"]
    title: Text
    vulnerabilities: Vulnerabilities = None
    fixed_in: OptionalName = None
    release_aliases: Aliases = None


Record = DeployRecord | IncidentRecord | SecurityFlagRecord

# One decoder per expected type (a record of one topic: ``type`` may be absent, and must
# agree when present), and the tagged union for a file, where ``type`` is required.
DECODERS: Final[dict[str | None, msgspec.json.Decoder[Record]]] = {
    None: msgspec.json.Decoder(Record),
    "deploy": msgspec.json.Decoder(DeployRecord),
    "incident": msgspec.json.Decoder(IncidentRecord),
    "security_flag": msgspec.json.Decoder(SecurityFlagRecord),
}

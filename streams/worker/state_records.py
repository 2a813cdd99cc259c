"""The state changelog's record format: a service's state, its parts, outboxes, sent marks.

Partition *p* of the changelog (``<group>-service-state-changelog``, compacted)
holds the services of input partition *p*. Its records, by key:

* ``<service>`` — the service's **state head**: the last input offset applied per
  topic, references to the outboxes not known to be sent, and the engine's state,
  inline or in parts. Formats: ``RS1`` (offsets and inline engine bytes, no outbox;
  what most heads are), ``RS4`` (a JSON header with offsets, outbox references and
  the parts, then inline engine bytes when not in parts). ``RS2`` and ``RS3``
  (an inline outbox), written by workers before this format, still read.
* ``\\x00relsec:part:<service>\\x00<checkpoint>/<i>`` — part *i* of an engine state too
  big for one record (a burst of thousands of findings keeps them all in the
  lateness log for a day). Written before the head that names them; the parts of a
  head's predecessor are deleted (tombstones) once the new head is stored.
* ``\\x00relsec:outbox:<checkpoint>.<p>/<i>`` — chunk *i* of the outputs (alerts, OCSF
  findings, late dead letters) a checkpoint's events produced on partition *p*,
  stored before the heads that reference them and deleted once sent.
* ``\\x00relsec:outbox-sent`` — the **sent mark**: outboxes referenced by heads stored
  below this offset were sent.

Every record fits the limit of the topic (``max.message.bytes`` and the producer's
``message.max.bytes``, learned at start): states and outboxes are split into as
many records as their size needs, so no shape of traffic makes a checkpoint
unstorable. Whoever restores a partition re-sends the outboxes of heads stored at
or after the mark (a duplicate at worst, never a loss) and deletes what no head
needs (:func:`plan_restore`).
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson

from agents.errors import StateError
from streams.worker.records import Output

OUTBOX_SENT_KEY: Final = b"\x00relsec:outbox-sent"
PART_PREFIX: Final = b"\x00relsec:part:"
OUTBOX_PREFIX: Final = b"\x00relsec:outbox:"
RECORD_OVERHEAD: Final = 512
"""Bytes a record may cost on the wire beyond its key and value (record and batch
headers, varints): subtracted from a topic's limit to get what a value may hold."""

_STATE_MAGIC: Final = b"RS1\n"
_STATE_MAGIC_OUTBOX_JSON: Final = b"RS2\n"  # written until 2026-11-26: still read
_STATE_MAGIC_OUTBOX: Final = b"RS3\n"  # written until the split records: still read
_STATE_MAGIC_HEAD: Final = b"RS4\n"
# Per output: topic length, key length (-1: none), value length, partition (-1: none).
_OUTPUT_HEAD: Final = struct.Struct(">HiIi")

Getter = Callable[[bytes], bytes | None]
KeyKind = Literal["state", "part", "outbox", "mark"]


def key_kind(key: bytes) -> KeyKind:
    if key.startswith(b"\x00relsec:"):
        if key.startswith(PART_PREFIX):
            return "part"
        if key.startswith(OUTBOX_PREFIX):
            return "outbox"
        return "mark"
    return "state"


@dataclass(frozen=True, slots=True)
class OutboxRef:
    """Where one checkpoint's outputs of one partition are stored: ``chunks`` records."""

    checkpoint: str
    partition: int
    chunks: int

    def chunk_keys(self) -> list[bytes]:
        stem = OUTBOX_PREFIX + f"{self.checkpoint}.{self.partition}/".encode()
        return [stem + str(i).encode() for i in range(self.chunks)]


@dataclass(frozen=True, slots=True)
class PartsRef:
    """Where a head's engine state is stored when it does not fit in the head."""

    checkpoint: str
    count: int

    def part_keys(self, service_key: bytes) -> list[bytes]:
        stem = PART_PREFIX + service_key + b"\x00" + self.checkpoint.encode() + b"/"
        return [stem + str(i).encode() for i in range(self.count)]


@dataclass(frozen=True, slots=True)
class StoredState:
    """One service's stored state, whatever records it takes."""

    offsets: Mapping[str, int]
    engine: bytes
    outbox_refs: tuple[OutboxRef, ...] = ()
    outbox: tuple[Output, ...] = ()
    """Outputs stored inline (``RS2``/``RS3`` heads of earlier workers); never written now."""


# -- outputs as bytes ----------------------------------------------------------------


def pack_outputs(outputs: Sequence[Output]) -> bytes:
    """The outputs in one binary blob: a count, then per output a fixed head and its bytes."""
    parts = [len(outputs).to_bytes(4, "big")]
    pack = _OUTPUT_HEAD.pack
    for o in outputs:
        topic = o.topic.encode("utf-8")
        key, value = o.key, o.value or b""
        parts.append(
            pack(
                len(topic),
                -1 if key is None else len(key),
                len(value),
                -1 if o.partition is None else o.partition,
            )
        )
        parts.append(topic)
        if key is not None:
            parts.append(key)
        parts.append(value)
    return b"".join(parts)


def unpack_outputs(data: bytes | memoryview, pos: int = 0) -> tuple[list[Output], int]:
    """The outputs of :func:`pack_outputs` starting at ``pos``, and where they end."""
    view = memoryview(data)
    try:
        if pos + 4 > len(view):
            raise ValueError("no output count")
        count = int.from_bytes(view[pos : pos + 4], "big")
        pos += 4
        outputs = []
        for _ in range(count):
            topic_len, key_len, value_len, partition = _OUTPUT_HEAD.unpack_from(view, pos)
            pos += _OUTPUT_HEAD.size
            topic = bytes(view[pos : pos + topic_len]).decode("utf-8")
            pos += topic_len
            key = None
            if key_len >= 0:
                key = bytes(view[pos : pos + key_len])
                pos += key_len
            value = bytes(view[pos : pos + value_len])
            pos += value_len
            if pos > len(view):
                raise ValueError("outputs run past the end of the record")
            outputs.append(Output(topic, key, value, None if partition < 0 else partition))
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        raise StateError(f"stored outbox is malformed: {exc!r}") from None
    return outputs, pos


def _split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


# -- outboxes --------------------------------------------------------------------------


def encode_outbox(
    topic: str, outputs: Sequence[Output], checkpoint: str, partition: int, value_budget: int
) -> tuple[OutboxRef, list[Output]]:
    """The records of changelog ``topic`` holding ``outputs`` (values of at most
    ``value_budget`` bytes)."""
    chunks = _split(pack_outputs(outputs), value_budget)
    ref = OutboxRef(checkpoint, partition, len(chunks))
    return ref, [
        Output(topic, k, c, partition) for k, c in zip(ref.chunk_keys(), chunks, strict=True)
    ]


def decode_outbox(ref: OutboxRef, get: Getter) -> list[Output] | None:
    """The outputs of ``ref``; ``None`` when a chunk is gone: chunks are deleted only
    once their outputs were acknowledged, so a set missing any of them was sent."""
    chunks = []
    for key in ref.chunk_keys():
        chunk = get(key)
        if chunk is None:
            return None
        chunks.append(chunk)
    outputs, _ = unpack_outputs(b"".join(chunks))
    return outputs


# -- state heads and parts -------------------------------------------------------------


def encode_state(
    topic: str,
    service_key: bytes,
    state: StoredState,
    checkpoint: str,
    partition: int,
    value_budget: int,
) -> list[Output]:
    """The records of changelog ``topic`` storing ``state``: its parts (if the engine
    state does not fit in the head), then the head; each value at most ``value_budget``."""
    if state.outbox:
        raise ValueError("inline outboxes are read, never written: store them as references")
    offsets = orjson.dumps(dict(state.offsets))
    if not state.outbox_refs:
        head = b"".join((_STATE_MAGIC, offsets, b"\n", state.engine))
        if len(head) <= value_budget:
            return [Output(topic, service_key, head, partition)]
    header: dict[str, Any] = {
        "x": [[r.checkpoint, r.partition, r.chunks] for r in state.outbox_refs],
    }
    inline = b"".join((_STATE_MAGIC_HEAD, b'{"o":', offsets, b",", _json_tail(header), b"\n"))
    if len(inline) + len(state.engine) <= value_budget:
        return [Output(topic, service_key, inline + state.engine, partition)]
    # A part's key is the head's plus the prefix, the checkpoint and ``\x00``, ``/`` and i.
    part_budget = value_budget - len(PART_PREFIX) - len(checkpoint) - 16
    if part_budget < 1:
        raise ValueError(f"a value budget of {value_budget} bytes leaves no room for parts")
    pieces = _split(state.engine, part_budget)
    parts = PartsRef(checkpoint, len(pieces))
    header["p"] = [parts.checkpoint, parts.count]
    head = b"".join((_STATE_MAGIC_HEAD, b'{"o":', offsets, b",", _json_tail(header), b"\n"))
    if len(head) > value_budget:
        raise ValueError(f"a state head of {len(head)} bytes exceeds {value_budget} bytes")
    records = [
        Output(topic, key, piece, partition)
        for key, piece in zip(parts.part_keys(service_key), pieces, strict=True)
    ]
    records.append(Output(topic, service_key, head, partition))
    return records


def _json_tail(header: dict[str, Any]) -> bytes:
    """``header`` as JSON without its opening brace (it follows the offsets)."""
    return orjson.dumps(header)[1:]


def _parse_head(data: bytes) -> tuple[bytes, dict[str, Any], int]:
    """``(magic, header, end of header)`` of a state head; StateError when malformed."""
    for magic in (_STATE_MAGIC, _STATE_MAGIC_HEAD, _STATE_MAGIC_OUTBOX, _STATE_MAGIC_OUTBOX_JSON):
        if data.startswith(magic):
            break
    else:
        raise StateError("table value is not a relsec worker state")
    end = data.find(b"\n", len(magic))
    if end < 0:
        raise StateError("stored state header is malformed: no end of header")
    try:
        parsed = orjson.loads(data[len(magic) : end])
    except orjson.JSONDecodeError as exc:
        raise StateError(f"stored state header is malformed: {exc!r}") from None
    if not isinstance(parsed, dict):
        raise StateError("stored state header is malformed: not an object")
    return magic, parsed, end


def head_parts(data: bytes) -> PartsRef | None:
    """The parts a state head names (to delete them once a newer head replaces it)."""
    if not data.startswith(_STATE_MAGIC_HEAD):
        return None
    try:
        _, header, _ = _parse_head(data)
        parts = header.get("p")
        return None if parts is None else PartsRef(str(parts[0]), int(parts[1]))
    except (StateError, IndexError, TypeError, ValueError):
        return None


def head_outbox_refs(data: bytes) -> tuple[OutboxRef, ...]:
    """The outbox references of a state head (none for the older formats)."""
    if not data.startswith(_STATE_MAGIC_HEAD):
        return ()
    try:
        _, header, _ = _parse_head(data)
        return _refs(header)
    except StateError:
        return ()


def _refs(header: Mapping[str, Any]) -> tuple[OutboxRef, ...]:
    try:
        return tuple(OutboxRef(str(c), int(p), int(n)) for c, p, n in header.get("x", ()))
    except (TypeError, ValueError) as exc:
        raise StateError(f"stored state header has malformed outbox references: {exc!r}") from None


def _offsets(raw: Any) -> dict[str, int]:
    try:
        return {str(k): int(v) for k, v in raw.items()}
    except (AttributeError, TypeError, ValueError) as exc:
        raise StateError(f"stored state header is malformed: {exc!r}") from None


def decode_state(service_key: bytes, head: bytes, get: Getter) -> StoredState:
    """The state a head stores, its parts read through ``get``; StateError when malformed."""
    magic, header, end = _parse_head(head)
    if magic is _STATE_MAGIC:
        return StoredState(_offsets(header), head[end + 1 :])
    if magic is _STATE_MAGIC_OUTBOX_JSON:
        return _decode_json_outbox(header, head[end + 1 :])
    if magic is _STATE_MAGIC_OUTBOX:
        outbox, pos = unpack_outputs(head, end + 1)
        return StoredState(_offsets(header), head[pos:], outbox=tuple(outbox))
    offsets = _offsets(header.get("o", {}))
    refs = _refs(header)
    parts = header.get("p")
    if parts is None:
        return StoredState(offsets, head[end + 1 :], refs)
    try:
        ref = PartsRef(str(parts[0]), int(parts[1]))
    except (IndexError, TypeError, ValueError) as exc:
        raise StateError(f"stored state header names malformed parts: {exc!r}") from None
    pieces = []
    for i, key in enumerate(ref.part_keys(service_key)):
        piece = get(key)
        if piece is None:
            raise StateError(
                f"part {i + 1} of {ref.count} of the stored state of "
                f"{service_key.decode('utf-8', 'replace')!r} is missing"
            )
        pieces.append(piece)
    return StoredState(offsets, b"".join(pieces), refs)


def _decode_json_outbox(header: Mapping[str, Any], engine: bytes) -> StoredState:
    """The ``RS2`` layout: offsets and a base64 outbox in one JSON header."""
    try:
        offsets = {str(k): int(v) for k, v in header["offsets"].items()}
        outbox = tuple(
            Output(
                str(topic),
                None if key is None else base64.b64decode(key),
                base64.b64decode(value),
                None if partition is None else int(partition),
            )
            for topic, key, value, partition in header.get("outbox", [])
        )
    except (AttributeError, KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise StateError(f"stored state header is malformed: {exc!r}") from None
    return StoredState(offsets, engine, outbox=outbox)


# -- restoring a partition ---------------------------------------------------------------


@dataclass(slots=True)
class RestorePlan:
    """What the owner of a restored partition must do before it goes on.

    ``resend``: outputs of heads stored at or after the sent mark (their sending was
    never confirmed). ``delete``: outbox chunks and parts no current head needs,
    deleted once the re-sent outputs are acknowledged and a new mark is written.
    """

    resend: list[Output] = field(default_factory=list)
    delete: list[bytes] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def plan_restore(
    records: Mapping[bytes, tuple[int, bytes]],
    sent_to: int,
    chunks: Mapping[bytes, bytes],
    fresh: Container[bytes] | None = None,
) -> RestorePlan:
    """The plan for one partition: ``records`` are its heads and parts (key -> offset,
    value), ``chunks`` its outbox chunks in the order they were stored, ``sent_to`` its
    sent mark. Outboxes are re-sent in the order they were stored. Only the heads in
    ``fresh`` (read just now; default all) can need a re-send: a partition owned
    without a break was read before, and its owner sent what it stored."""
    plan = RestorePlan()
    needed_parts: set[bytes] = set()
    seen_refs: set[OutboxRef] = set()
    refs: list[OutboxRef] = []
    for key, (offset, value) in records.items():
        if key_kind(key) != "state":
            continue
        parts = head_parts(value)
        if parts is not None:
            needed_parts.update(parts.part_keys(key))
        if offset < sent_to or (fresh is not None and key not in fresh):
            continue
        try:
            magic, header, end = _parse_head(value)
            if magic is _STATE_MAGIC_OUTBOX_JSON:
                plan.resend.extend(_decode_json_outbox(header, b"").outbox)
            elif magic is _STATE_MAGIC_OUTBOX:
                plan.resend.extend(unpack_outputs(value, end + 1)[0])
            elif magic is _STATE_MAGIC_HEAD:
                for ref in _refs(header):
                    if ref not in seen_refs:
                        seen_refs.add(ref)
                        refs.append(ref)
        except StateError as exc:
            plan.unreadable.append(f"{key.decode('utf-8', 'replace')!r}: {exc}")
    # Re-sent oldest outbox first, in the order the checkpoints stored them: a later
    # checkpoint's outputs (a retraction, a changed alert) must go out after an earlier
    # one's, or the earlier would win. The heads come in no useful order (a service's
    # key keeps the place of its first state), but ``chunks`` holds the outbox records
    # as they were read, and each checkpoint's chunks were stored before its heads.
    stored_at = {chunk_key: place for place, chunk_key in enumerate(chunks)}
    refs.sort(key=lambda ref: stored_at.get(ref.chunk_keys()[0], -1))
    for ref in refs:
        outputs = decode_outbox(ref, chunks.get)
        if outputs is not None:
            plan.resend.extend(outputs)
    plan.delete.extend(chunks)
    plan.delete.extend(k for k in records if key_kind(k) == "part" and k not in needed_parts)
    return plan

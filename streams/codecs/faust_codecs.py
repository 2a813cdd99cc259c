"""relsec's codecs as Faust codecs, so agents and topics can name them as serializers.

A Faust codec is a ``faust.serializers.codecs.Codec`` with ``_dumps``/``_loads``;
Faust clones codecs with ``type(self)(children=..., **self.kwargs)``, so the
relsec codec and the kind travel as keyword arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from faust.serializers import codecs as faust_codecs

if TYPE_CHECKING:
    from streams.codecs import Codec


class RelsecFaustCodec(faust_codecs.Codec):
    """One kind of relsec record (event, alert or dead_letter) as a Faust codec."""

    def __init__(self, children: Any = None, **kwargs: Any) -> None:
        super().__init__(children, **kwargs)
        self._codec: Codec = kwargs["codec"]
        kind = kwargs["kind"]
        if kind == "event":
            self._encode = self._codec.encode_event
            self._decode = self._codec.decode_event
        elif kind == "alert":
            self._encode = self._codec.encode_alert
            self._decode = self._codec.decode_alert
        elif kind == "dead_letter":
            self._encode = self._codec.encode_dead_letter
            self._decode = self._codec.decode_dead_letter
        else:
            raise ValueError(f"no relsec record kind {kind!r}")

    def _dumps(self, obj: Any) -> bytes:
        raw: bytes = self._encode(obj)
        return raw

    def _loads(self, s: bytes) -> Any:
        return self._decode(s)


def register(codec: Codec, names: Mapping[str, str]) -> None:
    """Register ``codec`` for each kind under ``names[kind]``."""
    for kind, name in names.items():
        faust_codecs.register(name, RelsecFaustCodec(codec=codec, kind=kind))

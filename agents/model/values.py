"""Immutable value classes that are cheap to build when compiled.

The engine builds several values per event (the event itself, its evidence reference,
state records, findings, alerts, the outcome). As frozen dataclasses their generated
``__init__`` runs as interpreted Python even in the mypyc build and sets each field
through ``object.__setattr__``: about 1.7 µs for an eleven-field event, against 40 ns for
a hand-written ``__init__`` that mypyc compiles (docs/performance.md, "Values").

So the hot values are plain classes: ``__slots__``, an ``__init__`` that assigns each
field once as ``Final`` (``mypy --strict`` refuses any later assignment; the compiled
build refuses it at run time too), and this base for what a dataclass would have
generated: equality and hashing over :meth:`Value.values` (which each class lists in
field order), a ``repr`` naming the fields, :meth:`Value.replace`, and pickling.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

V = TypeVar("V", bound="Value")


class Value:
    """Equality, hashing, ``repr`` and ``replace`` over a class's listed fields."""

    __slots__ = ()
    FIELDS: ClassVar[tuple[str, ...]] = ()
    """The ``__init__`` parameters, in order, each stored under its own name."""

    def values(self) -> tuple[object, ...]:
        """The fields' values in :attr:`FIELDS` order."""
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self) or not isinstance(other, Value):
            return NotImplemented
        return self.values() == other.values()

    def __hash__(self) -> int:
        return hash(self.values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={v!r}" for n, v in zip(self.FIELDS, self.values(), strict=True))
        return f"{type(self).__name__}({shown})"

    def __reduce__(self) -> tuple[type[Value], tuple[object, ...]]:
        """Pickled as its class and field values (the compiled classes have no ``__dict__``)."""
        return (type(self), self.values())

    def replace(self: V, **changes: Any) -> V:
        """A copy with ``changes`` (field name to new value), as ``dataclasses.replace``."""
        unknown = set(changes).difference(self.FIELDS)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {sorted(unknown)[0]!r}")
        fields = dict(zip(self.FIELDS, self.values(), strict=True))
        fields.update(changes)
        return type(self)(**fields)

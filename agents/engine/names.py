"""Which release names of one service are the same release (SPEC §8, "Release aliases").

"Two release names of one service are the same release at an event when a chain of
events links them: the events before it and the event itself (each event links its
release with each of its aliases)." :class:`ReleaseNames` is that relation as a
union-find kept per service state: every linked name maps straight to the root of its
class (the smaller class is relabelled on a merge), so ``find`` is one dict lookup and
a name never linked is a class of its own without costing an entry.

Links are never forgotten (pruning a link could change a later outcome: a deploy of one
name and a flag on the other are the same release however far apart). Memory is bounded
instead by caps: a class holds at most :data:`MAX_NAMES_PER_RELEASE` names and a service
at most :data:`MAX_LINKED_NAMES_PER_SERVICE` linked names (by default; the engine's
config sets them, through :class:`ReleaseNamePolicy`); a link that would pass a cap
is not made. Both caps are judged in event order, so the classes stay a function of the
events.

Mutable names never link (:class:`ReleaseNamePolicy`): ``latest`` and the names that
match the configured mutable-tag patterns.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Final

MAX_NAMES_PER_RELEASE: Final = 128
"""A release with more names than this is a broken adapter, not a release."""

MAX_LINKED_NAMES_PER_SERVICE: Final = 8192
"""About two thousand releases with four names each (version, tag, digest, commit)."""

DEFAULT_MUTABLE_RELEASE_PATTERNS: Final[tuple[str, ...]] = (
    # moving words, bare or as an image tag: branch names and channels
    r"(?i)(?:.+:)?(?:latest|stable|edge|nightly|main|master|head|develop|dev|canary|next|current)",
    # an image's floating major or major.minor tag (nginx:1, app:v2.7): Docker convention
    r"(?:.+:)v?\d+(?:\.\d+)?",
)
"""Regular expressions (full match) of release names that move between releases.

``latest`` is always mutable (SPEC §8) and digests (``sha256:…``) never are."""


class ReleaseNamePolicy:
    """Which release names may link, and how many: tells mutable names (never linked)
    from immutable ones (answers are cached) and carries the two caps."""

    __slots__ = ("_cache", "_patterns", "max_linked_names", "max_names_per_release")

    def __init__(
        self,
        patterns: Sequence[str],
        max_names_per_release: int = MAX_NAMES_PER_RELEASE,
        max_linked_names: int = MAX_LINKED_NAMES_PER_SERVICE,
    ) -> None:
        self._patterns = tuple(re.compile(p) for p in patterns)
        self._cache: dict[str, bool] = {}
        self.max_names_per_release = max_names_per_release
        self.max_linked_names = max_linked_names

    def is_mutable(self, name: str) -> bool:
        known = self._cache.get(name)
        if known is not None:
            return known
        if name == "latest":
            mutable = True
        elif "sha256:" in name:
            mutable = False
        else:
            mutable = any(p.fullmatch(name) for p in self._patterns)
        if len(self._cache) >= 65_536:
            self._cache.clear()
        self._cache[name] = mutable
        return mutable

    def linkable(self, names: Sequence[str]) -> list[str]:
        """The names that may link, in the order given."""
        return [n for n in names if not self.is_mutable(n)]


@lru_cache(maxsize=16)
def policy_for(
    patterns: tuple[str, ...],
    max_names_per_release: int = MAX_NAMES_PER_RELEASE,
    max_linked_names: int = MAX_LINKED_NAMES_PER_SERVICE,
) -> ReleaseNamePolicy:
    """One compiled policy per setting (configs are frozen and compared by value)."""
    return ReleaseNamePolicy(patterns, max_names_per_release, max_linked_names)


_NO_ROOTS: Final[dict[str, str]] = {}
_NO_MEMBERS: Final[dict[str, tuple[str, ...]]] = {}


class ReleaseNames:
    """The classes of linked release names of one service.

    Copy-on-write: :meth:`copy` shares the dicts until either side links something, so
    copying a state (which the lateness log does) costs nothing here. Member lists are
    never changed in place.
    """

    __slots__ = ("_members", "_root", "_shared")

    def __init__(self) -> None:
        # Most services link nothing: start on shared empty dicts (copied on first write).
        self._root: dict[str, str] = _NO_ROOTS
        self._members: dict[str, tuple[str, ...]] = _NO_MEMBERS
        self._shared = True

    def copy(self) -> ReleaseNames:
        new = ReleaseNames()
        new._root = self._root
        new._members = self._members
        new._shared = self._shared = True
        return new

    def _own(self) -> None:
        if self._shared:
            self._root = dict(self._root)
            self._members = dict(self._members)
            self._shared = False

    # -- queries -------------------------------------------------------------

    def find(self, name: str) -> str:
        """The root of ``name``'s class (``name`` itself when it was never linked)."""
        return self._root.get(name, name)

    def same(self, a: str, b: str) -> bool:
        if a == b:
            return True
        root = self._root
        return bool(root) and root.get(a, a) == root.get(b, b)

    def members(self, name: str) -> tuple[str, ...]:
        """The names of ``name``'s class in the order they joined, the root first."""
        root = self._root.get(name)
        if root is None:
            return (name,)
        return self._members[root]

    def linked(self, name: str) -> bool:
        return name in self._root

    def __len__(self) -> int:
        return len(self._root)

    # -- linking ---------------------------------------------------------------

    def union(
        self,
        a: str,
        b: str,
        max_per_release: int = MAX_NAMES_PER_RELEASE,
        max_names: int = MAX_LINKED_NAMES_PER_SERVICE,
    ) -> tuple[str, str] | None:
        """Link two names. Returns ``(kept root, absorbed root)`` when two classes merged,
        ``None`` when they were one already or a cap refused the link (a class of more
        than ``max_per_release`` names, more than ``max_names`` linked names)."""
        root = self._root
        ra = root.get(a, a)
        rb = root.get(b, b)
        if ra == rb:
            return None
        ma = self._members.get(ra, (ra,))
        mb = self._members.get(rb, (rb,))
        if len(ma) + len(mb) > max_per_release:
            return None
        new_names = (ra not in root) + (rb not in root)
        if len(root) + new_names > max_names:
            return None
        if len(ma) < len(mb):  # relabel the smaller class; on a tie ``a``'s root stays
            ra, rb, ma, mb = rb, ra, mb, ma
        self._own()
        root = self._root
        root[ra] = ra
        for name in mb:
            root[name] = ra
        self._members[ra] = ma + mb
        self._members.pop(rb, None)
        return ra, rb

    # -- serialization ---------------------------------------------------------

    def to_obj(self) -> list[list[str]]:
        """Each class of two or more names as a list, root first, in joining order."""
        return [list(members) for members in self._members.values()]

    @staticmethod
    def from_obj(obj: list[list[str]]) -> ReleaseNames:
        names = ReleaseNames()
        names._own()
        for members in obj:
            if len(members) < 2 or not all(isinstance(m, str) for m in members):
                raise ValueError("a release class needs two or more names")
            root = members[0]
            for name in members:
                if name in names._root:
                    raise ValueError(f"release name {name!r} is in two classes")
                names._root[name] = root
            names._members[root] = tuple(members)
        return names

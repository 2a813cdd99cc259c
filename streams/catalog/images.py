"""One written form for container image names, so that every tool meets on the same strings.

SPEC §8: an image is written ``REPOSITORY:TAG``, ``REPOSITORY@sha256:HEX`` or, for the
manifest digest alone, the bare ``sha256:HEX``; REPOSITORY is lower-case and Docker
Hub's implicit parts are written out (``nginx`` -> ``docker.io/library/nginx``,
``acme/app`` -> ``docker.io/acme/app``, ``index.docker.io/x`` -> ``docker.io/library/x``).

:func:`parse_image` follows the grammar of the OCI distribution reference
(``[HOST[:PORT]/]PATH[:TAG][@ALGORITHM:HEX]``): the first path segment is a registry
host when it holds a ``.`` or a ``:`` or is ``localhost``; a ``:`` after the last
``/`` starts the tag, so ``registry:5000/app`` is a repository without a tag.

:func:`release_aliases` turns the names a tool knows of one release into the
``release_aliases`` list of an event: canonical, distinct, without the release
itself and without mutable names, at most :data:`MAX_ALIASES`.

Mutable names are the engine's (:data:`~agents.engine.names.DEFAULT_MUTABLE_RELEASE_PATTERNS`):
``latest``, channel words (``stable``, ``main``, ...) and an image's floating major or
major.minor tag (``nginx:1``, ``app:v2.7``). A scan of ``app:2`` is a scan of whatever
``:2`` pointed to that day, so its release is the digest, and ``2`` names no release:
otherwise two scans of ``:2`` a month apart would link their digests into one release
and a finding of the old image would flag the new one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from agents.engine.names import DEFAULT_MUTABLE_RELEASE_PATTERNS, policy_for
from agents.model.events import MAX_ID_CHARS, MAX_RELEASE_ALIASES

MAX_ALIASES: Final = MAX_RELEASE_ALIASES
#: Tags that name whatever was pushed last: never a name of one release.
MUTABLE_TAGS: Final = frozenset({"latest"})

DOCKER_HUB: Final = "docker.io"
_DOCKER_HUB_ALIASES: Final = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_PATH_SEGMENT: Final = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$")
_HOST: Final = re.compile(
    r"^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::[0-9]+)?$"
    r"|^\[[0-9a-f:]+\](?::[0-9]+)?$"
)
_TAG: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST: Final = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-f0-9]{32,}$")


@dataclass(frozen=True, slots=True)
class ImageRef:
    """An image reference in canonical form: repository, optional tag, optional digest."""

    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The last path segment of the repository (``ghcr.io/acme/shop`` -> ``shop``)."""
        return self.repository.rsplit("/", 1)[-1]

    @property
    def version(self) -> str | None:
        """The tag, else the digest."""
        return self.tag or self.digest

    @property
    def tagged(self) -> str | None:
        """``REPOSITORY:TAG``, or None without a tag."""
        return f"{self.repository}:{self.tag}" if self.tag else None

    @property
    def pinned(self) -> str | None:
        """``REPOSITORY@DIGEST``, or None without a digest."""
        return f"{self.repository}@{self.digest}" if self.digest else None

    def names(self) -> list[str]:
        """Every canonical name of this reference's release: pinned, digest, tagged, tag
        (the last two only when the tag is not mutable: a floating tag names no release)."""
        if self.tag and is_mutable_tag(self.tag):
            return [n for n in (self.pinned, self.digest) if n]
        out = [self.pinned, self.digest, self.tagged, self.tag]
        return [n for n in out if n]


def normalize_digest(text: str) -> str | None:
    """``SHA256:ABC…`` -> ``sha256:abc…``; None when it is not ``ALGORITHM:HEX`` (32+ hex)."""
    candidate = text.strip().lower()
    return candidate if _DIGEST.match(candidate) else None


def normalize_repository(text: str) -> str | None:
    """The canonical repository of ``text`` (no tag, no digest), or None when it is not one."""
    ref = parse_image(text)
    if ref is None or ref.tag or ref.digest:
        return None
    return ref.repository


def parse_image(text: str) -> ImageRef | None:
    """Parse ``[HOST[:PORT]/]PATH[:TAG][@DIGEST]`` into canonical form; None when it is not one."""
    raw = text.strip()
    if not raw or len(raw) > 1024 or any(c.isspace() for c in raw):
        return None
    digest: str | None = None
    if "@" in raw:
        raw, _, digest_text = raw.partition("@")
        digest = normalize_digest(digest_text)
        if digest is None:
            return None
    tag: str | None = None
    colon, slash = raw.rfind(":"), raw.rfind("/")
    if colon > slash:
        raw, tag = raw[:colon], raw[colon + 1 :]
        if not _TAG.match(tag):
            return None
    segments = raw.split("/")
    host: str | None = None
    first = segments[0].lower()
    if len(segments) > 1 and ("." in first or ":" in first or first == "localhost"):
        if not _HOST.match(first):
            return None
        host = first
        segments = segments[1:]
    path = [s.lower() for s in segments]
    if not path or not all(_PATH_SEGMENT.match(s) for s in path):
        return None
    if host is None or host in _DOCKER_HUB_ALIASES:
        host = DOCKER_HUB
        if len(path) == 1:
            path = ["library", *path]
    repository = "/".join([host, *path])
    if len(repository) > MAX_ID_CHARS:
        return None
    return ImageRef(repository=repository, tag=tag, digest=digest)


_RELEASE_NAMES: Final = policy_for(DEFAULT_MUTABLE_RELEASE_PATTERNS)


def is_mutable_tag(tag: str) -> bool:
    """True for an image tag that moves between images: ``latest``, channel words, a
    floating major or major.minor (``1``, ``v2.7``); ``2.7.0`` and ``sha-3f2a`` do not."""
    text = tag.strip()
    return text.lower() in MUTABLE_TAGS or _RELEASE_NAMES.is_mutable(f"image:{text}")


def is_mutable(name: str) -> bool:
    """True for names that never identify one release: ``latest``, ``REPOSITORY:latest``,
    ``REPOSITORY:1`` and the engine's other mutable patterns; a digest never is."""
    text = name.strip()
    if "@" in text or "sha256:" in text.lower():
        return False
    tail = text.rsplit(":", 1)[-1] if ":" in text else text
    return tail.lower() in MUTABLE_TAGS or _RELEASE_NAMES.is_mutable(text)


def release_aliases(release: str | None, names: Iterable[str | None]) -> list[str]:
    """The ``release_aliases`` of an event naming ``release``, from every name the tool gave.

    Distinct, in the order given, without ``release`` itself, without empty, over-long
    or mutable names; at most :data:`MAX_ALIASES` (the first ones: adapters list the
    most precise names, digests, first).
    """
    seen = {release} if release else set()
    out: list[str] = []
    for name in names:
        if not name:
            continue
        text = name.strip()
        if not text or text in seen or len(text) > MAX_ID_CHARS or is_mutable(text):
            continue
        seen.add(text)
        out.append(text)
        if len(out) == MAX_ALIASES:
            break
    return out


__all__ = [
    "DOCKER_HUB",
    "MAX_ALIASES",
    "MUTABLE_TAGS",
    "ImageRef",
    "is_mutable",
    "is_mutable_tag",
    "normalize_digest",
    "normalize_repository",
    "parse_image",
    "release_aliases",
]
